-- cancel_session.lua: cancels an active session: pending TODOs dropped, every agent terminated,
-- session:complete {status:"cancelled"} emitted, and a cancel published to the runners so they
-- kill the session's workers now (they would also find out at their next transition: fenced).
-- KEYS[6] decomposing sessions (zset)
-- ARGV[5] runner control channel   ARGV[6] control message
-- Returns 'ok', or the status that could not be cancelled ('completed', 'cancelled', …,
-- 'missing').
local status = redis.call('HGET', S_SESSION, 'status')
if status ~= 'running' and status ~= 'decomposing' then return status or 'missing' end
redis.call('DEL', S_PENDING)
for _, aid in ipairs(redis.call('LRANGE', S_AGENTS, 0, -1)) do terminate(aid) end
finish_session('cancelled', nil)
redis.call('ZREM', KEYS[6], redis.call('HGET', S_SESSION, 'id'))
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ok'

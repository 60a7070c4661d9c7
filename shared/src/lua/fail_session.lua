-- fail_session.lua: fails a session that cannot run (decomposition failed or timed out).
-- KEYS[6] decomposing sessions (zset)
-- ARGV[5] error message   ARGV[6] the status the session must still have (e.g. 'decomposing')
-- Returns 1 when this call failed the session, 0 when it was not in that status.
local sid = redis.call('HGET', S_SESSION, 'id')
if sid then redis.call('ZREM', KEYS[6], sid) end
if redis.call('HGET', S_SESSION, 'status') ~= ARGV[6] then return 0 end
finish_session('failed', ARGV[5])
return 1

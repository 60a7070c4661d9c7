-- emit_events.lua: records a batch of events relayed from a worker's stdout.
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] batch number (increasing for one token)
-- then pairs (event name, payload)
-- Returns 'ok' (recorded, or a retried batch already recorded) or 'stale' (late runner: dropped).
local aid = ARGV[5]
if not holds(aid, ARGV[6]) then return 'stale' end
local akey = agent_key(aid)
local batch = tonumber(ARGV[7])
if batch <= (tonumber(redis.call('HGET', akey, 'ebatch')) or 0) then return 'ok' end
redis.call('HSET', akey, 'ebatch', batch)
for i = 8, #ARGV, 2 do emit(ARGV[i], ARGV[i + 1]) end
return 'ok'

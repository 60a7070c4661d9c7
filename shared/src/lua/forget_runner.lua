-- forget_runner.lua: removes a reaped runner once nothing is left in its claimed list and its
-- lease is still expired (it did not come back meanwhile).
-- KEYS[1] runners (zset)   KEYS[2] its claimed list   KEYS[3] its info hash   ARGV[1] runner id
-- Returns 1 when removed, 0 otherwise.
if redis.call('LLEN', KEYS[2]) > 0 then return 0 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(score) >= now then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return 1

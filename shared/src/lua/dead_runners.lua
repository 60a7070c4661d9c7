-- dead_runners.lua: runners whose lease expired (Redis clock).
-- KEYS[1] runners (zset)   ARGV[1] at most this many
-- Returns their ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[1]))

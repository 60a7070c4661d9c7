-- heartbeat.lua: a runner renews its lease (Redis clock, so runner clocks may drift).
-- KEYS[1] runners (zset, score = lease expiry ms)   KEYS[2] this runner's info hash
-- ARGV[1] runner id   ARGV[2] lease (ms)   then field/value pairs for the info hash
-- Returns 1 when the runner was (re-)added: its first beat, or it had been reaped as dead (its
-- agents were handed to others and it must drop them), else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local added = redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if #ARGV > 2 then redis.call('HSET', KEYS[2], unpack(ARGV, 3)) end
redis.call('HSET', KEYS[2], 'leaseExpiresAt', now + lease)
redis.call('PEXPIRE', KEYS[2], lease * 4)
return added

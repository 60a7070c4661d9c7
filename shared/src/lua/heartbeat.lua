-- heartbeat.lua: a runner renews its lease (Redis clock, so runner clocks may drift).
-- K.runners (zset: runner id -> lease expiry, ms)   K.info (this runner's info hash)
-- ARGS: runnerId, leaseMs, info (field -> value, all strings: what the runner publishes)
-- Replies {outcome='added'} when the runner was (re-)added: its first beat, or it had been
-- reaped as dead (its agents were handed to others and it must drop them); else
-- {outcome='renewed'}.
local expires = now_ms() + ARGS.leaseMs
local added = redis.call('ZADD', K.runners, expires, ARGS.runnerId)
local fields = {'leaseExpiresAt', expires}
for field, value in pairs(ARGS.info) do
  fields[#fields + 1] = field
  fields[#fields + 1] = value
end
redis.call('HSET', K.info, unpack(fields))
redis.call('PEXPIRE', K.info, ARGS.leaseMs * 4)
if added == 1 then return reply('added') end
return reply('renewed')

-- forget_runner.lua: removes a reaped runner once nothing is left in its claimed list and its
-- lease is still expired (it did not come back meanwhile).
-- K.runners (zset)   K.claimed (its claimed list)   K.info (its info hash)
-- ARGS: runnerId
-- Replies {outcome='forgotten'} or {outcome='kept'}.
if redis.call('LLEN', K.claimed) > 0 then return reply('kept') end
local score = redis.call('ZSCORE', K.runners, ARGS.runnerId)
if not score or tonumber(score) >= now_ms() then return reply('kept') end
redis.call('ZREM', K.runners, ARGS.runnerId)
redis.call('DEL', K.info)
return reply('forgotten')

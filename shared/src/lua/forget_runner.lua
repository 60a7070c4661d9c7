-- forget_runner.lua: removes a reaped runner once nothing is left in its claimed list and its
-- lease is still expired (it did not come back meanwhile).
-- K.runners (zset)   K.info (its info hash)   K.claimed (its claimed list; absent with several
-- queue shards, whose claimed lists the caller checked first — a job claimed after that check
-- by a runner come back to life is handed back by its own orphan sweep)
-- ARGS: runnerId
-- Replies {outcome='forgotten'} or {outcome='kept'}.
if K.claimed and redis.call('LLEN', K.claimed) > 0 then return reply('kept') end
local score = redis.call('ZSCORE', K.runners, ARGS.runnerId)
if not score or tonumber(score) >= now_ms() then return reply('kept') end
redis.call('ZREM', K.runners, ARGS.runnerId)
redis.call('DEL', K.info)
return reply('forgotten')

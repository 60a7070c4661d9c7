-- dead_runners.lua: runners whose lease expired (Redis clock).
-- K.runners (zset: runner id -> lease expiry, ms)
-- ARGS: limit (at most this many)
-- Replies their ids, an array (not JSON: a plain list).
return redis.call('ZRANGEBYSCORE', K.runners, '-inf', '(' .. now_ms(), 'LIMIT', 0, ARGS.limit)

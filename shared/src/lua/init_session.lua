-- init_session.lua: records a new session as `decomposing`, before the planner is asked.
-- KEYS[6] sessions index (zset)   KEYS[7] decomposing sessions (zset, score = deadline)
-- ARGV[5] session id   ARGV[6] prompt   ARGV[7] agentCount   ARGV[8] createdAt (ms)
-- ARGV[9] deadline (ms) after which a live coordinator fails the session if it is still decomposing
-- ARGV[10] retention (ms): how long the session's keys live once it has finished (0 = forever)
-- Returns 1 when created, 0 when a session with this id already exists (nothing written).
if redis.call('EXISTS', S_SESSION) == 1 then return 0 end
redis.call('HSET', S_SESSION, 'id', ARGV[5], 'prompt', ARGV[6], 'agentCount', ARGV[7],
  'status', 'decomposing', 'createdAt', ARGV[8], 'seq', 0, 'retention', ARGV[10])
redis.call('ZADD', KEYS[6], ARGV[8], ARGV[5])
redis.call('ZADD', KEYS[7], ARGV[9], ARGV[5])
return 1

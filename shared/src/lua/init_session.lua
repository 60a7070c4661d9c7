-- init_session.lua: records a new session as `decomposing`, before the planner is asked.
-- K.sessions (zset: the sessions index)   K.decomposing (zset: session id -> deadline)
-- ARGS: sessionId, prompt, agentCount, createdAt (ms),
--   deadline (ms; a live coordinator fails the session if it is still decomposing then),
--   retentionMs (how long the session's keys live once it has finished; 0 = forever)
-- Replies {outcome='created'}, or {outcome='idTaken'} when a session with this id exists
-- (nothing written).
if redis.call('EXISTS', K.session) == 1 then return reply('idTaken') end
redis.call('HSET', K.session, 'id', ARGS.sessionId, 'prompt', ARGS.prompt,
  'agentCount', ARGS.agentCount, 'status', 'decomposing', 'createdAt', ARGS.createdAt, 'seq', 0,
  'retention', ARGS.retentionMs)
redis.call('ZADD', K.sessions, ARGS.createdAt, ARGS.sessionId)
redis.call('ZADD', K.decomposing, ARGS.deadline, ARGS.sessionId)
return reply('created')

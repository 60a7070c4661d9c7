-- init_session.lua: step 2 of recording a new session: the session itself, `decomposing`,
-- before the planner is asked (its index entries were written by index_session.lua).
-- K.gone (the tombstone the watchdog leaves for an id it gave up on)
-- ARGS: sessionId, prompt, agentCount, createdAt (ms),
--   retentionMs (how long the session's keys live once it has finished; 0 = forever)
-- Replies {outcome='created'}; {outcome='idTaken'} when a session with this id exists, or
-- {outcome='abandoned'} when the watchdog already gave up on this id (its coordinator stalled
-- past the deadline between the two steps); nothing written then.
if redis.call('EXISTS', K.session) == 1 then return reply('idTaken') end
if redis.call('EXISTS', K.gone) == 1 then return reply('abandoned') end
redis.call('HSET', K.session, 'id', ARGS.sessionId, 'prompt', ARGS.prompt,
  'agentCount', ARGS.agentCount, 'status', 'decomposing', 'createdAt', ARGS.createdAt, 'seq', 0,
  'retention', ARGS.retentionMs)
return reply('created')

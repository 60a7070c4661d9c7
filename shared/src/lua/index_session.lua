-- index_session.lua: step 1 of recording a new session (docs/redis-schema.md, "A session's
-- life across slots"): lists it and gives it a decomposition deadline, before the session
-- itself exists, so that it is listed once it exists and the watchdog finds it if its
-- coordinator stops. Global slot only.
-- K.sessions (zset: the sessions index)   K.decomposing (zset: session id -> deadline)
-- ARGS: sessionId, createdAt (ms), deadline (ms)
-- Replies {outcome='indexed'}. NX: an entry that exists (a retried request) keeps its score.
redis.call('ZADD', K.sessions, 'NX', ARGS.createdAt, ARGS.sessionId)
redis.call('ZADD', K.decomposing, 'NX', ARGS.deadline, ARGS.sessionId)
return reply('indexed')

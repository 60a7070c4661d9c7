-- fail_session.lua: fails a session that cannot run (decomposition failed or timed out).
-- K.decomposing (zset of sessions still decomposing)
-- ARGS: error (the message), onlyIf (the status the session must still have, e.g. 'decomposing')
-- Replies {outcome='failed'} when this call failed the session, {outcome='unchanged'} when it
-- was not in that status.
local sid = redis.call('HGET', K.session, 'id')
if sid then redis.call('ZREM', K.decomposing, sid) end
if redis.call('HGET', K.session, 'status') ~= ARGS.onlyIf then return reply('unchanged') end
finish_session('failed', ARGS.error)
return reply('failed')

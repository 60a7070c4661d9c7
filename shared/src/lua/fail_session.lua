-- fail_session.lua: fails a session that cannot run (decomposition failed or timed out). Its
-- decomposing entry is removed in the next step (the global slot); the watchdog removes it for
-- a coordinator that stopped in between.
-- K.gone (the tombstone of an id given up on)
-- ARGS: error (the message), onlyIf (the status the session must still have, e.g.
--   'decomposing'), goneTtlMs (how long a tombstone lives)
-- Replies {outcome='failed'} when this call failed the session, {outcome='unchanged', status}
-- when it was not in that status, {outcome='missing'} when there is no session: then a
-- tombstone makes sure none is created under this id later (init_session.lua refuses).
local status = redis.call('HGET', K.session, 'status')
if not status then
  redis.call('SET', K.gone, '1', 'PX', ARGS.goneTtlMs)
  return reply('missing')
end
if status ~= ARGS.onlyIf then return reply('unchanged', {status = status}) end
finish_session('failed', ARGS.error)
return reply('failed')

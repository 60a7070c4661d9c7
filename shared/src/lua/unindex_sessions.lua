-- unindex_sessions.lua: drops index entries of sessions whose keys are gone (expired by
-- retention, or never written: a coordinator stopped between index_session.lua and
-- init_session.lua) — but never one still in the decomposing set, whose session may yet be
-- written (the watchdog removes both entries together when it gives up on it). Global slot.
-- K.sessions (zset)   K.decomposing (zset)
-- ARGS: ids (session ids the caller found without a session hash)
-- Replies {outcome='dropped', count}.
local count = 0
for _, id in ipairs(ARGS.ids) do
  if not redis.call('ZSCORE', K.decomposing, id) then
    count = count + redis.call('ZREM', K.sessions, id)
  end
end
return reply('dropped', {count = count})

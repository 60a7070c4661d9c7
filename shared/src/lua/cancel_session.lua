-- cancel_session.lua: cancels an active session: pending TODOs dropped, every agent terminated,
-- session:complete {status:"cancelled"} emitted, and a cancel published to the runners so they
-- kill the session's workers now (they would also find out at their next transition: fenced).
-- Session slot only; the caller then drops its decomposing entry (global slot).
-- C.control (the runners' channel: a classic PUBLISH, one Redis or Sentinel)
-- C.sessionControl (on a Cluster: this session's own control channel, in its slot, SPUBLISHed;
-- the runners holding its agents SSUBSCRIBE to it, so no message goes to every node)
-- ARGS: controlMessage
-- Replies {outcome='cancelled'}, {outcome='finished', status} (already completed, failed or
-- cancelled: nothing changed) or {outcome='notFound'}.
local status = redis.call('HGET', K.session, 'status')
if not status then return reply('notFound') end
if status ~= 'running' and status ~= 'decomposing' then
  return reply('finished', {status = status})
end
redis.call('DEL', K.pending)
for _, aid in ipairs(redis.call('LRANGE', K.agents, 0, -1)) do terminate(aid) end
finish_session('cancelled', nil)
if SESSION.publish == 'SPUBLISH' then
  redis.call('SPUBLISH', C.sessionControl, ARGS.controlMessage)
else
  redis.call('PUBLISH', C.control, ARGS.controlMessage)
end
return reply('cancelled')

-- enqueue_jobs.lua: puts a running session's agent jobs on the ready queue, once: the
-- coordinator calls it right after create_session.lua, the watchdog again for a coordinator
-- that stopped in between, and only the first call pushes. Queue slot only.
-- K.ready (the ready list)   K.enqueued (this session's marker, in the queue's slot)
-- ARGS: jobs ([entry]), markerTtlMs (how long the marker outlives the call)
-- Replies {outcome='enqueued'}, or {outcome='already'} (nothing pushed).
if not redis.call('SET', K.enqueued, '1', 'NX', 'PX', ARGS.markerTtlMs) then
  return reply('already')
end
for _, job in ipairs(ARGS.jobs) do redis.call('LPUSH', K.ready, job) end
return reply('enqueued')

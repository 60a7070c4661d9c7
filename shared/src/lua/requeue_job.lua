-- requeue_job.lua: moves one agent job from a runner's claimed list back to the ready list's
-- consuming end (it is claimed next). Only the caller that removes it pushes it: never twice.
-- K.claimed (the runner's claimed list)   K.ready (the ready list)
-- ARGS: job (the entry)
-- Replies {outcome='moved'}, or {outcome='notThere'}.
if redis.call('LREM', K.claimed, 1, ARGS.job) == 1 then
  redis.call('RPUSH', K.ready, ARGS.job)
  return reply('moved')
end
return reply('notThere')

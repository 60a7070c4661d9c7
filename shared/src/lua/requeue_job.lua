-- requeue_job.lua: moves one agent job from a runner's claimed list back to the ready list's
-- consuming end (it is claimed next). Only the caller that removes it pushes it: never twice.
-- KEYS[1] the runner's claimed list   KEYS[2] ready list   ARGV[1] the job
-- Returns 1 when moved, 0 when it was not there.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0

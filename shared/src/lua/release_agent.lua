-- release_agent.lua: detaches an agent from its runner so its job can go back to the ready list;
-- an in-flight TODO returns to the head of the pending list (task:retry emitted).
-- Used by a draining runner (its own agents, by token, attempt not counted) and by the reaper
-- (a dead runner's agents, by runner id, attempt counted: the TODO may be what killed it).
-- ARGS: job ({sessionId, agentId}), holder ({token} or {runner}: who must hold the agent),
--   countAttempt (boolean), reason (why, stored as the TODO's error)
-- Replies {outcome='released'}, or {outcome='notHeld'} when the caller no longer holds the agent
-- or it is terminated.
local aid = ARGS.job.agentId
local akey = agent_key(aid)
local a = redis.call('HMGET', akey, 'token', 'runner', 'status', 'currentTaskId')
if not a[3] or a[3] == 'terminated' then return reply('notHeld') end
if ARGS.holder.token and a[1] ~= ARGS.holder.token then return reply('notHeld') end
if ARGS.holder.runner and a[2] ~= ARGS.holder.runner then return reply('notHeld') end
redis.call('HINCRBY', akey, 'token', 1)
redis.call('HSET', akey, 'runner', '', 'status', 'idle', 'currentTaskId', '')
local tid = a[4]
if tid and tid ~= '' then
  local tkey = todo_key(tid)
  local t = redis.call('HMGET', tkey, 'status', 'assignedTo', 'attempts')
  if t[1] == 'assigned' and t[2] == aid then
    local attempts = tonumber(t[3]) or 0
    if ARGS.countAttempt then attempts = attempts + 1 end
    redis.call('HSET', tkey, 'status', 'pending', 'assignedTo', '', 'attempts', attempts,
      'error', ARGS.reason)
    redis.call('LPUSH', K.pending, tid)
    emit('task:retry', failure_payload(tid, aid, ARGS.reason, attempts))
  end
end
return reply('released')

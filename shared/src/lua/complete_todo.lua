-- complete_todo.lua: records a worker's `complete` (the plan's completeTask).
-- ARGS: job ({sessionId, agentId}), token, todoId, result (absent: the worker gave none),
--   completedEvent (the task:completed payload),
--   takeNext (absent, or {maxAttempts}: also take the agent's next TODO in the same step, as
--   assign_next.lua would — saving the runner a round trip per TODO — and when none is pending
--   end the agent in the same step)
-- Replies {outcome='recorded', next} (recorded now, or already recorded by this holder: a
-- retried call; `next` is next_todo's answer, only with takeNext), {outcome='stale'} (the token
-- is no longer the agent's: a late runner) or {outcome='mismatch'} (the TODO is not this
-- agent's current one). Nothing is written unless the reply is 'recorded' now.
local aid, tid = ARGS.job.agentId, ARGS.todoId
local akey, tkey = agent_key(aid), todo_key(tid)
local function recorded()
  if not ARGS.takeNext then return reply('recorded') end
  return reply('recorded', {next = next_todo(aid, ARGS.takeNext.maxAttempts)})
end
local t = redis.call('HMGET', tkey, 'status', 'assignedTo')
local recorded_before = t[1] == 'completed' and t[2] == aid
if not holds(aid, ARGS.token) then
  -- A retried call whose first run recorded this completion and then ended the agent (which
  -- bumped the token): the same answer as then, not 'stale'.
  if ARGS.takeNext and recorded_before and redis.call('HGET', akey, 'status') == 'terminated' then
    return reply('recorded', {next = {outcome = 'done', ending = 'already'}})
  end
  return reply('stale')
end
if recorded_before then return recorded() end
if redis.call('HGET', akey, 'currentTaskId') ~= tid or t[1] ~= 'assigned' or t[2] ~= aid then
  return reply('mismatch')
end
redis.call('HSET', tkey, 'status', 'completed')
if ARGS.result then redis.call('HSET', tkey, 'result', ARGS.result) end
redis.call('HSET', akey, 'status', 'idle', 'currentTaskId', '')
emit('task:completed', ARGS.completedEvent)
return recorded()

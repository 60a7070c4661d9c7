-- fail_attempt.lua: one attempt at a TODO failed (worker crashed, timed out, said `fail`, …).
-- ARGS: job ({sessionId, agentId}), token, todoId, error (why), maxAttempts
-- Replies {outcome='retry', attempts}: back at the head of the pending list (task:retry emitted),
--   {outcome='failed', attempts}: attempts exhausted, TODO failed (task:failed emitted),
--   {outcome='stale'} or {outcome='mismatch'} as complete_todo.lua.
local aid, tid = ARGS.job.agentId, ARGS.todoId
local akey, tkey = agent_key(aid), todo_key(tid)
if not holds(aid, ARGS.token) then return reply('stale') end
local t = redis.call('HMGET', tkey, 'status', 'assignedTo', 'attempts')
if redis.call('HGET', akey, 'currentTaskId') ~= tid or t[1] ~= 'assigned' or t[2] ~= aid then
  return reply('mismatch')
end
local attempts = (tonumber(t[3]) or 0) + 1
local err = ARGS.error
redis.call('HSET', tkey, 'attempts', attempts, 'error', err)
redis.call('HSET', akey, 'status', 'idle', 'currentTaskId', '')
if attempts >= ARGS.maxAttempts then
  redis.call('HSET', tkey, 'status', 'failed')
  emit('task:failed', failure_payload(tid, aid, err, attempts))
  return reply('failed', {attempts = attempts})
end
redis.call('HSET', tkey, 'status', 'pending', 'assignedTo', '')
redis.call('LPUSH', K.pending, tid)
emit('task:retry', failure_payload(tid, aid, err, attempts))
return reply('retry', {attempts = attempts})

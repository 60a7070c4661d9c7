-- fail_attempt.lua: one attempt at a TODO failed (worker crashed, timed out, said `fail`, …).
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] todo id   ARGV[8] error text   ARGV[9] max attempts
-- Returns {'retry', attempts}: back at the head of the pending list (task:retry emitted),
--         {'failed', attempts}: attempts exhausted, TODO failed (task:failed emitted),
--         {'stale'} or {'mismatch'} as in complete_todo.lua.
local aid, tid = ARGV[5], ARGV[7]
local akey, tkey = agent_key(aid), todo_key(tid)
if not holds(aid, ARGV[6]) then return {'stale'} end
local t = redis.call('HMGET', tkey, 'status', 'assignedTo', 'attempts')
if redis.call('HGET', akey, 'currentTaskId') ~= tid or t[1] ~= 'assigned' or t[2] ~= aid then
  return {'mismatch'}
end
local attempts = (tonumber(t[3]) or 0) + 1
local err = ARGV[8]
redis.call('HSET', tkey, 'attempts', attempts, 'error', err)
redis.call('HSET', akey, 'status', 'idle', 'currentTaskId', '')
if attempts >= tonumber(ARGV[9]) then
  redis.call('HSET', tkey, 'status', 'failed')
  emit('task:failed', failure_payload(tid, aid, err, attempts))
  return {'failed', tostring(attempts)}
end
redis.call('HSET', tkey, 'status', 'pending', 'assignedTo', '')
redis.call('LPUSH', S_PENDING, tid)
emit('task:retry', failure_payload(tid, aid, err, attempts))
return {'retry', tostring(attempts)}

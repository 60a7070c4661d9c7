-- complete_todo.lua: records a worker's `complete` (the plan's completeTask).
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] todo id   ARGV[8] '1' when a result is given
-- ARGV[9] result   ARGV[10] task:completed payload
-- ARGV[11] max attempts, or '' — when given, the agent's next TODO is taken in the same step
-- (saving the runner a round trip per TODO), as assign_next.lua would, and when none is pending
-- the agent ends in the same step.
-- Returns {'ok'} (recorded now, or already recorded by this holder: a retried call), followed
-- with ARGV[11] by assign_next.lua's reply ({'ok', 'assigned', id, description, attempts} |
-- {'ok', 'done', outcome} | {'ok', 'ended', status}); or {'stale'} (the token is no longer the
-- agent's: a late runner) or {'mismatch'} (the TODO is not this agent's current one).
local aid, tid = ARGV[5], ARGV[7]
local akey, tkey = agent_key(aid), todo_key(tid)
local function then_next()
  if ARGV[11] == '' then return {'ok'} end
  local reply = next_todo(aid, tonumber(ARGV[11]))
  table.insert(reply, 1, 'ok')
  return reply
end
local t = redis.call('HMGET', tkey, 'status', 'assignedTo')
local recorded = t[1] == 'completed' and t[2] == aid
if not holds(aid, ARGV[6]) then
  -- A retried call whose first run recorded this completion and then ended the agent (which
  -- bumped the token): the same answer as then, not 'stale'.
  if ARGV[11] ~= '' and recorded and redis.call('HGET', akey, 'status') == 'terminated' then
    return {'ok', 'done', 'already'}
  end
  return {'stale'}
end
if recorded then return then_next() end
if redis.call('HGET', akey, 'currentTaskId') ~= tid or t[1] ~= 'assigned' or t[2] ~= aid then
  return {'mismatch'}
end
redis.call('HSET', tkey, 'status', 'completed')
if ARGV[8] == '1' then redis.call('HSET', tkey, 'result', ARGV[9]) end
redis.call('HSET', akey, 'status', 'idle', 'currentTaskId', '')
emit('task:completed', ARGV[10])
return then_next()

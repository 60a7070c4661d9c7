-- complete_todo.lua: records a worker's `complete` (the plan's completeTask).
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] todo id   ARGV[8] '1' when a result is given
-- ARGV[9] result   ARGV[10] task:completed payload
-- Returns 'ok' (recorded now, or already recorded by this holder: a retried call),
--         'stale' (the token is no longer the agent's: a late runner), or
--         'mismatch' (the TODO is not this agent's current one).
local aid, tid = ARGV[5], ARGV[7]
local akey, tkey = agent_key(aid), todo_key(tid)
if not holds(aid, ARGV[6]) then return 'stale' end
local t = redis.call('HMGET', tkey, 'status', 'assignedTo')
if t[1] == 'completed' and t[2] == aid then return 'ok' end
if redis.call('HGET', akey, 'currentTaskId') ~= tid or t[1] ~= 'assigned' or t[2] ~= aid then
  return 'mismatch'
end
redis.call('HSET', tkey, 'status', 'completed')
if ARGV[8] == '1' then redis.call('HSET', tkey, 'result', ARGV[9]) end
redis.call('HSET', akey, 'status', 'idle', 'currentTaskId', '')
emit('task:completed', ARGV[10])
return 'ok'

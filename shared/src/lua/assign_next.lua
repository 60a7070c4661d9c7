-- assign_next.lua: gives an agent its next TODO (the plan's getNextPendingTask + assignTask).
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] max attempts
-- Returns {'assigned', todo id, description, attempts so far}
--      or {'empty'}: nothing pending (agent set idle; the caller terminates it)
--      or {'stale'}: the token is no longer the agent's
--      or {'ended', status}: the session is not running any more.
-- A TODO whose attempts reached the limit is failed here (task:failed) instead of assigned.
-- Idempotent: if the agent already holds an assigned TODO (a retried call), that one is returned.
local aid = ARGV[5]
local akey = agent_key(aid)
if not holds(aid, ARGV[6]) then return {'stale'} end
local status = redis.call('HGET', S_SESSION, 'status')
if status ~= 'running' then return {'ended', status or 'missing'} end
local current = redis.call('HGET', akey, 'currentTaskId')
if current and current ~= '' then
  local t = redis.call('HMGET', todo_key(current), 'status', 'assignedTo', 'description', 'attempts')
  if t[1] == 'assigned' and t[2] == aid then
    return {'assigned', current, t[3], t[4] or '0'}
  end
end
local max = tonumber(ARGV[7])
while true do
  local tid = redis.call('LPOP', S_PENDING)
  if not tid then
    redis.call('HSET', akey, 'status', 'idle', 'currentTaskId', '')
    return {'empty'}
  end
  local tkey = todo_key(tid)
  local t = redis.call('HMGET', tkey, 'status', 'attempts', 'description', 'error')
  if t[1] == 'pending' then
    local attempts = tonumber(t[2]) or 0
    if attempts >= max then
      local err = 'gave up after ' .. attempts .. ' attempts'
      if t[4] and t[4] ~= '' then err = err .. ': ' .. t[4] end
      redis.call('HSET', tkey, 'status', 'failed', 'error', err)
      emit('task:failed', failure_payload(tid, aid, err, attempts))
    else
      redis.call('HSET', tkey, 'status', 'assigned', 'assignedTo', aid)
      redis.call('HSET', akey, 'status', 'working', 'currentTaskId', tid)
      emit('task:assigned', '{"todoId":"' .. tid .. '","agentId":"' .. aid .. '"}')
      return {'assigned', tid, t[3], tostring(attempts)}
    end
  end
end

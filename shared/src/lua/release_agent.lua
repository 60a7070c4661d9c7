-- release_agent.lua: detaches an agent from its runner so its job can go back to the ready list;
-- an in-flight TODO returns to the head of the pending list (task:retry emitted).
-- Used by a draining runner (its own agents, by token, attempt not counted) and by the reaper
-- (a dead runner's agents, by runner id, attempt counted: the TODO may be what killed it).
-- ARGV[5] agent id   ARGV[6] 'token' or 'runner'   ARGV[7] the token or runner id to match
-- ARGV[8] '1' to count an attempt   ARGV[9] reason
-- Returns 1 when released, 0 when the caller no longer holds the agent or it is terminated.
local aid = ARGV[5]
local akey = agent_key(aid)
local a = redis.call('HMGET', akey, 'token', 'runner', 'status', 'currentTaskId')
if not a[3] or a[3] == 'terminated' then return 0 end
if ARGV[6] == 'token' and a[1] ~= ARGV[7] then return 0 end
if ARGV[6] == 'runner' and a[2] ~= ARGV[7] then return 0 end
redis.call('HINCRBY', akey, 'token', 1)
redis.call('HSET', akey, 'runner', '', 'status', 'idle', 'currentTaskId', '')
local tid = a[4]
if tid and tid ~= '' then
  local tkey = todo_key(tid)
  local t = redis.call('HMGET', tkey, 'status', 'assignedTo', 'attempts')
  if t[1] == 'assigned' and t[2] == aid then
    local attempts = (tonumber(t[3]) or 0) + tonumber(ARGV[8])
    redis.call('HSET', tkey, 'status', 'pending', 'assignedTo', '', 'attempts', attempts,
      'error', ARGV[9])
    redis.call('LPUSH', S_PENDING, tid)
    emit('task:retry', failure_payload(tid, aid, ARGV[9], attempts))
  end
end
return 1

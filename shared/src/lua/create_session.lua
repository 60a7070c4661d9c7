-- create_session.lua: turns a decomposing session into a running one in one step: its TODOs,
-- agents, pending list, agent jobs on the ready list and task:created events, or nothing at all.
-- KEYS[6] ready list   KEYS[7] decomposing sessions (zset)
-- ARGV[5] number of TODOs T   ARGV[6] number of agents A
-- then T triples (todo id, description, task:created payload), then A pairs (agent id, job)
-- Returns 'ok', or the session's status ('cancelled', 'failed', …, or 'missing') when it is no
-- longer decomposing; then nothing is written.
local status = redis.call('HGET', S_SESSION, 'status')
if status ~= 'decomposing' then return status or 'missing' end
local sid = redis.call('HGET', S_SESSION, 'id')
local i = 7
for _ = 1, tonumber(ARGV[5]) do
  local tid = ARGV[i]
  redis.call('HSET', todo_key(tid), 'id', tid, 'description', ARGV[i + 1], 'status', 'pending',
    'assignedTo', '', 'attempts', 0)
  redis.call('RPUSH', S_TODOS, tid)
  redis.call('RPUSH', S_PENDING, tid)
  emit('task:created', ARGV[i + 2])
  i = i + 3
end
for _ = 1, tonumber(ARGV[6]) do
  local aid = ARGV[i]
  redis.call('HSET', agent_key(aid), 'id', aid, 'sessionId', sid, 'status', 'booting',
    'currentTaskId', '', 'token', 0)
  redis.call('RPUSH', S_AGENTS, aid)
  redis.call('LPUSH', KEYS[6], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', S_SESSION, 'status', 'running')
redis.call('ZREM', KEYS[7], sid)
return 'ok'

-- create_session.lua: turns a decomposing session into a running one in one step: its TODOs,
-- agents, pending list, agent jobs on the ready list and task:created events, or nothing at all.
-- K.ready (the ready list)   K.decomposing (zset of sessions still decomposing)
-- ARGS: todos ([{id, description, createdEvent (the task:created payload)}]),
--   agents ([{id, job (its ready-list entry)}])
-- Replies {outcome='created'}, or {outcome='notDecomposing', status} when the session left
-- `decomposing` meanwhile (cancelled, or failed by the watchdog; status absent: no session);
-- then nothing is written.
local status = redis.call('HGET', K.session, 'status')
if status ~= 'decomposing' then return reply('notDecomposing', {status = status or nil}) end
local sid = redis.call('HGET', K.session, 'id')
for _, todo in ipairs(ARGS.todos) do
  redis.call('HSET', todo_key(todo.id), 'id', todo.id, 'description', todo.description,
    'status', 'pending', 'assignedTo', '', 'attempts', 0)
  redis.call('RPUSH', K.todos, todo.id)
  redis.call('RPUSH', K.pending, todo.id)
  emit('task:created', todo.createdEvent)
end
for _, agent in ipairs(ARGS.agents) do
  redis.call('HSET', agent_key(agent.id), 'id', agent.id, 'sessionId', sid, 'status', 'booting',
    'currentTaskId', '', 'token', 0)
  redis.call('RPUSH', K.agents, agent.id)
  redis.call('LPUSH', K.ready, agent.job)
end
redis.call('HSET', K.session, 'status', 'running')
redis.call('ZREM', K.decomposing, sid)
return reply('created')

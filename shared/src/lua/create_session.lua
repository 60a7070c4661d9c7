-- create_session.lua: turns a decomposing session into a running one in one step: its TODOs,
-- agents, pending list and task:created events, or nothing at all. Its agent jobs go onto the
-- ready queue in the next step (enqueue_jobs.lua, the queue's slot); the watchdog does that
-- step for a coordinator that stopped in between (docs/redis-schema.md).
-- ARGS: todos ([{id, description, createdEvent (the task:created payload)}]), agents ([id])
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
for _, aid in ipairs(ARGS.agents) do
  redis.call('HSET', agent_key(aid), 'id', aid, 'sessionId', sid, 'status', 'booting',
    'currentTaskId', '', 'token', 0)
  redis.call('RPUSH', K.agents, aid)
end
redis.call('HSET', K.session, 'status', 'running')
return reply('created')

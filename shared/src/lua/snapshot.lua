-- snapshot.lua: one consistent read of a session: its hash (with seq, the last event's number),
-- every TODO hash and every agent hash, in creation order.
-- (the session's keys only; no arguments)
-- Replies {session fields, {todo fields…}, {agent fields…}} as flat HGETALL arrays (not JSON:
-- the hashes are read as they are), or nil when there is no such session.
local s = redis.call('HGETALL', K.session)
if #s == 0 then return false end
local todos, agents = {}, {}
for _, tid in ipairs(redis.call('LRANGE', K.todos, 0, -1)) do
  todos[#todos + 1] = redis.call('HGETALL', todo_key(tid))
end
for _, aid in ipairs(redis.call('LRANGE', K.agents, 0, -1)) do
  agents[#agents + 1] = redis.call('HGETALL', agent_key(aid))
end
return {s, todos, agents}

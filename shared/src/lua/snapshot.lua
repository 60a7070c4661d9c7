-- snapshot.lua: one consistent read of a session: its hash (with seq, the last event's number),
-- every TODO hash and every agent hash, in creation order.
-- (standard session keys and arguments only)
-- Returns {session fields, {todo fields…}, {agent fields…}} as flat HGETALL arrays, or nil.
local s = redis.call('HGETALL', S_SESSION)
if #s == 0 then return false end
local todos, agents = {}, {}
for _, tid in ipairs(redis.call('LRANGE', S_TODOS, 0, -1)) do
  todos[#todos + 1] = redis.call('HGETALL', todo_key(tid))
end
for _, aid in ipairs(redis.call('LRANGE', S_AGENTS, 0, -1)) do
  agents[#agents + 1] = redis.call('HGETALL', agent_key(aid))
end
return {s, todos, agents}

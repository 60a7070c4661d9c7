-- terminate_agent.lua: an agent with nothing left to do ends; the last one ends the session.
-- ARGV[5] agent id   ARGV[6] token
-- Returns 'terminated' (others still run), 'completed' or 'failed' (this call ended the session
-- with that status; session:complete emitted once), 'pending' (work arrived since assign_next
-- said empty: keep going), 'stale', or 'already'.
local aid = ARGV[5]
if not holds(aid, ARGV[6]) then return 'stale' end
if redis.call('HGET', agent_key(aid), 'status') == 'terminated' then return 'already' end
if redis.call('LLEN', S_PENDING) > 0 then return 'pending' end
terminate(aid)
for _, other in ipairs(redis.call('LRANGE', S_AGENTS, 0, -1)) do
  if redis.call('HGET', agent_key(other), 'status') ~= 'terminated' then return 'terminated' end
end
if redis.call('HGET', S_SESSION, 'status') ~= 'running' then return 'terminated' end
local todos = redis.call('LRANGE', S_TODOS, 0, -1)
local failed = 0
for _, tid in ipairs(todos) do
  if redis.call('HGET', todo_key(tid), 'status') ~= 'completed' then failed = failed + 1 end
end
if failed > 0 then
  finish_session('failed', failed .. ' of ' .. #todos .. ' TODOs failed')
  return 'failed'
end
finish_session('completed', nil)
return 'completed'

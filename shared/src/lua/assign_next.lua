-- assign_next.lua: gives an agent its next TODO (the plan's getNextPendingTask + assignTask).
-- ARGS: job ({sessionId, agentId}), token (the caller's fencing token), maxAttempts
-- Replies next_todo's answer (session.lua): {outcome='assigned', todoId, description, attempts},
-- {outcome='done', ending, status} or {outcome='ended', status}; or {outcome='stale'} when the
-- token is no longer the agent's.
if not holds(ARGS.job.agentId, ARGS.token) then return reply('stale') end
return cjson.encode(next_todo(ARGS.job.agentId, ARGS.maxAttempts))

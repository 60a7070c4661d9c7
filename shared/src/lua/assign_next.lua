-- assign_next.lua: gives an agent its next TODO (the plan's getNextPendingTask + assignTask).
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] max attempts
-- Returns {'assigned', todo id, description, attempts so far}
--      or {'done', outcome}: nothing pending, so the agent ended in this step; outcome is
--         'terminated' (other agents still run), 'completed' or 'failed' (it was the last one
--         and the session ended with that status), or 'already'
--      or {'stale'}: the token is no longer the agent's
--      or {'ended', status}: the session is not running any more.
-- A TODO whose attempts reached the limit is failed here (task:failed) instead of assigned.
-- Idempotent: if the agent already holds an assigned TODO (a retried call), that one is returned.
local aid = ARGV[5]
if not holds(aid, ARGV[6]) then return {'stale'} end
return next_todo(aid, tonumber(ARGV[7]))

-- start_agent.lua: a runner that claimed an agent job takes the agent over and, in the same
-- step, gets the agent's next TODO (one round trip instead of two).
-- ARGS: job ({sessionId, agentId}), runner (its id), maxAttempts
-- Replies {outcome='started', token, next}: the fencing token every later call of this runner
-- for the agent carries (bumped, so any earlier holder is fenced off) and next_todo's answer
-- (session.lua); or {outcome='gone', reason} when the job is obsolete (session not running,
-- agent terminated or unknown): the caller then drops the job.
local status = redis.call('HGET', K.session, 'status')
if status ~= 'running' then return reply('gone', {reason = 'session ' .. (status or 'missing')}) end
local aid = ARGS.job.agentId
local akey = agent_key(aid)
local astatus = redis.call('HGET', akey, 'status')
if not astatus then return reply('gone', {reason = 'unknown agent'}) end
if astatus == 'terminated' then return reply('gone', {reason = 'agent terminated'}) end
local token = redis.call('HINCRBY', akey, 'token', 1)
redis.call('HSET', akey, 'runner', ARGS.runner, 'ebatch', 0)
return reply('started', {token = tostring(token), next = next_todo(aid, ARGS.maxAttempts)})

-- start_agent.lua: a runner that claimed an agent job takes the agent over.
-- ARGV[5] agent id   ARGV[6] runner id
-- Returns {'ok', token}: the fencing token every later call of this runner for the agent carries
-- (bumped, so any earlier holder is fenced off), or {'gone', reason} when the job is obsolete
-- (session not running, agent terminated or unknown); the caller then drops the job.
local status = redis.call('HGET', S_SESSION, 'status')
if status ~= 'running' then return {'gone', 'session ' .. (status or 'missing')} end
local akey = agent_key(ARGV[5])
local astatus = redis.call('HGET', akey, 'status')
if not astatus then return {'gone', 'unknown agent'} end
if astatus == 'terminated' then return {'gone', 'agent terminated'} end
local token = redis.call('HINCRBY', akey, 'token', 1)
redis.call('HSET', akey, 'runner', ARGV[6], 'ebatch', 0)
return {'ok', tostring(token)}

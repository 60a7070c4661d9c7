-- start_agent.lua: a runner that claimed an agent job takes the agent over and, in the same
-- step, gets the agent's next TODO (one round trip instead of two).
-- ARGV[5] agent id   ARGV[6] runner id   ARGV[7] max attempts
-- Returns {'ok', token, <assign_next.lua's reply>}: the fencing token every later call of this
-- runner for the agent carries (bumped, so any earlier holder is fenced off) and the TODO to run
-- (or {'done', outcome} when nothing is pending); or {'gone', reason} when the job is obsolete
-- (session not running, agent terminated or unknown); the caller then drops the job.
local status = redis.call('HGET', S_SESSION, 'status')
if status ~= 'running' then return {'gone', 'session ' .. (status or 'missing')} end
local aid = ARGV[5]
local akey = agent_key(aid)
local astatus = redis.call('HGET', akey, 'status')
if not astatus then return {'gone', 'unknown agent'} end
if astatus == 'terminated' then return {'gone', 'agent terminated'} end
local token = redis.call('HINCRBY', akey, 'token', 1)
redis.call('HSET', akey, 'runner', ARGV[6], 'ebatch', 0)
local reply = next_todo(aid, tonumber(ARGV[7]))
table.insert(reply, 1, tostring(token))
table.insert(reply, 1, 'ok')
return reply

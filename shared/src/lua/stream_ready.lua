-- stream_ready.lua: a worker's sandbox is up: stored on the agent, agent:stream_ready emitted.
-- ARGS: job ({sessionId, agentId}), token, sandboxId, streamUrl, readyEvent (the agent:stream_ready payload)
-- Replies {outcome='recorded'} or {outcome='stale'}.
local aid = ARGS.job.agentId
if not holds(aid, ARGS.token) then return reply('stale') end
redis.call('HSET', agent_key(aid), 'sandboxId', ARGS.sandboxId, 'streamUrl', ARGS.streamUrl)
emit('agent:stream_ready', ARGS.readyEvent)
return reply('recorded')

-- stream_ready.lua: a worker's sandbox is up: stored on the agent, agent:stream_ready emitted.
-- ARGV[5] agent id   ARGV[6] token   ARGV[7] sandbox id   ARGV[8] stream url   ARGV[9] payload
-- Returns 'ok' or 'stale'.
local aid = ARGV[5]
if not holds(aid, ARGV[6]) then return 'stale' end
redis.call('HSET', agent_key(aid), 'sandboxId', ARGV[7], 'streamUrl', ARGV[8])
emit('agent:stream_ready', ARGV[9])
return 'ok'

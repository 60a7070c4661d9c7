-- emit_events.lua: records a batch of events relayed from a worker's stdout.
-- ARGS: job ({sessionId, agentId}), token, batch (a number increasing for one token),
--   events ([{name, payload}], in order)
-- Replies {outcome='recorded'} (recorded, or a retried batch already recorded) or
-- {outcome='stale'} (a late runner: dropped).
local aid = ARGS.job.agentId
if not holds(aid, ARGS.token) then return reply('stale') end
local akey = agent_key(aid)
if ARGS.batch <= (tonumber(redis.call('HGET', akey, 'ebatch')) or 0) then
  return reply('recorded')
end
redis.call('HSET', akey, 'ebatch', ARGS.batch)
for _, event in ipairs(ARGS.events) do emit(event.name, event.payload) end
return reply('recorded')

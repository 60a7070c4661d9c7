-- prelude.lua: prepended to every transition (shared/src/transitions/mod.rs).
--
-- A transition's keys are all in KEYS (so Redis, and a Cluster, knows every key it touches);
-- everything else comes in ARGV[1], one JSON object:
--   {"keys": {<name>: <index into KEYS>, ...}, "channels": {<name>: <pub/sub channel>, ...},
--    "args": {<name>: <value>, ...}, "session": {...}}
-- ("session" only for the session transitions: see session.lua). A script therefore reads its
-- keys, channels and arguments by name — K.ready, C.control, ARGS.maxAttempts — as its header lists
-- them, and the Rust type of the transition writes them under the same names. Absent optional
-- arguments are absent (nil), never JSON null.
-- Every script answers one JSON object tagged by "outcome", which the Rust side decodes into
-- the transition's reply enum (a script that reads data answers it in the shape its header says).
local CALL = cjson.decode(ARGV[1])
local ARGS = CALL.args
local K = {}
for name, index in pairs(CALL.keys) do K[name] = KEYS[index] end
local C = CALL.channels

-- Milliseconds since the epoch by the Redis clock: leases, deadlines and timestamps never
-- depend on the clock of whichever runner or coordinator calls.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The script's answer: {"outcome": outcome, ...fields}.
local function reply(outcome, fields)
  local answer = fields or {}
  answer.outcome = outcome
  return cjson.encode(answer)
end

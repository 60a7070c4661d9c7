-- prelude.lua: shared helpers, prepended to every session transition by scripts.rs.
--
-- Every session script receives the same first keys and arguments (all keys of one session share
-- the hash tag {<sessionId>}, so a script touches one Cluster slot; the global keys some scripts
-- add from KEYS[6] on are the documented exception, see docs/redis-schema.md):
--   KEYS[1] session hash    KEYS[2] todo ids list    KEYS[3] agent ids list
--   KEYS[4] pending list    KEYS[5] events stream
--   ARGV[1] todo hash key prefix   ARGV[2] agent hash key prefix
--   ARGV[3] live pub/sub channel   ARGV[4] events stream max length (approximate)
-- Script-specific arguments start at ARGV[5].
local S_SESSION, S_TODOS, S_AGENTS, S_PENDING, S_EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local TODO_PREFIX, AGENT_PREFIX, CHANNEL, MAXLEN = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function todo_key(tid) return TODO_PREFIX .. tid end
local function agent_key(aid) return AGENT_PREFIX .. aid end

-- A JSON string literal (quoted, escaped).
local function jstr(s) return cjson.encode(s) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Records one event: takes the session's next seq, appends entry <seq>-0 to the capped stream and
-- publishes the envelope {"seq","event","data"} on the live channel. `payload` is a JSON object
-- without seq; seq is spliced in as its last field. Returns the seq.
local function emit(name, payload)
  local seq = redis.call('HINCRBY', S_SESSION, 'seq', 1)
  local data
  if payload == '{}' then
    data = '{"seq":' .. seq .. '}'
  else
    data = string.sub(payload, 1, -2) .. ',"seq":' .. seq .. '}'
  end
  redis.call('XADD', S_EVENTS, 'MAXLEN', '~', MAXLEN, seq .. '-0', 'event', name, 'data', data)
  redis.call('PUBLISH', CHANNEL, '{"seq":' .. seq .. ',"event":"' .. name .. '","data":' .. data .. '}')
  return seq
end

-- {"todoId","agentId","error","attempts"}: the payload of task:failed and task:retry.
local function failure_payload(tid, aid, err, attempts)
  return '{"todoId":"' .. tid .. '","agentId":"' .. aid .. '","error":' .. jstr(err) ..
    ',"attempts":' .. attempts .. '}'
end

-- Terminates one agent (once): status terminated, token bumped so whoever still holds it is
-- fenced off, agent:terminated emitted. Returns true if this call terminated it.
local function terminate(aid)
  local akey = agent_key(aid)
  local status = redis.call('HGET', akey, 'status')
  if not status or status == 'terminated' then return false end
  redis.call('HSET', akey, 'status', 'terminated', 'currentTaskId', '', 'runner', '')
  redis.call('HINCRBY', akey, 'token', 1)
  emit('agent:terminated', '{"agentId":"' .. aid .. '"}')
  return true
end

-- Ends the session with a final status, emitting session:complete exactly once, and starts the
-- retention clock: every key of the session expires `retention` ms from now.
local function finish_session(status, err)
  local sid = redis.call('HGET', S_SESSION, 'id')
  redis.call('HSET', S_SESSION, 'status', status, 'finishedAt', now_ms())
  local payload = '{"sessionId":"' .. sid .. '","status":"' .. status .. '"'
  if err then
    redis.call('HSET', S_SESSION, 'error', err)
    payload = payload .. ',"error":' .. jstr(err)
  end
  emit('session:complete', payload .. '}')
  local retention = tonumber(redis.call('HGET', S_SESSION, 'retention')) or 0
  if retention > 0 then
    for _, tid in ipairs(redis.call('LRANGE', S_TODOS, 0, -1)) do
      redis.call('PEXPIRE', todo_key(tid), retention)
    end
    for _, aid in ipairs(redis.call('LRANGE', S_AGENTS, 0, -1)) do
      redis.call('PEXPIRE', agent_key(aid), retention)
    end
    for _, key in ipairs({S_SESSION, S_TODOS, S_AGENTS, S_PENDING, S_EVENTS}) do
      redis.call('PEXPIRE', key, retention)
    end
  end
end

-- The agent hash's fencing token equals `token`.
local function holds(aid, token)
  return redis.call('HGET', agent_key(aid), 'token') == token
end

-- The agent has nothing left to do (next_todo said empty): it ends, and the last agent to end
-- ends the session. Returns 'terminated' (others still run), 'completed' or 'failed' (this call
-- ended the session with that status; session:complete emitted once), or 'already'.
local function end_agent(aid)
  if redis.call('HGET', agent_key(aid), 'status') == 'terminated' then return 'already' end
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
end

-- The agent's next TODO (the plan's getNextPendingTask + assignTask), for a caller that has
-- checked the fencing token. Returns {'assigned', todo id, description, attempts so far},
-- {'done', end_agent's reply} (nothing pending: the agent ended in the same step, saving the
-- runner a round trip per agent), or {'ended', status} (session not running).
-- A TODO whose attempts reached `max` is failed (task:failed) instead of assigned. Idempotent:
-- an agent that already holds an assigned TODO (a retried call) gets that one back.
local function next_todo(aid, max)
  local akey = agent_key(aid)
  local status = redis.call('HGET', S_SESSION, 'status')
  if status ~= 'running' then return {'ended', status or 'missing'} end
  local current = redis.call('HGET', akey, 'currentTaskId')
  if current and current ~= '' then
    local t = redis.call('HMGET', todo_key(current), 'status', 'assignedTo', 'description', 'attempts')
    if t[1] == 'assigned' and t[2] == aid then
      return {'assigned', current, t[3], t[4] or '0'}
    end
  end
  while true do
    local tid = redis.call('LPOP', S_PENDING)
    if not tid then
      return {'done', end_agent(aid)}
    end
    local tkey = todo_key(tid)
    local t = redis.call('HMGET', tkey, 'status', 'attempts', 'description', 'error')
    if t[1] == 'pending' then
      local attempts = tonumber(t[2]) or 0
      if attempts >= max then
        local err = 'gave up after ' .. attempts .. ' attempts'
        if t[4] and t[4] ~= '' then err = err .. ': ' .. t[4] end
        redis.call('HSET', tkey, 'status', 'failed', 'error', err)
        emit('task:failed', failure_payload(tid, aid, err, attempts))
      else
        redis.call('HSET', tkey, 'status', 'assigned', 'assignedTo', aid)
        redis.call('HSET', akey, 'status', 'working', 'currentTaskId', tid)
        emit('task:assigned', '{"todoId":"' .. tid .. '","agentId":"' .. aid .. '"}')
        return {'assigned', tid, t[3], tostring(attempts)}
      end
    end
  end
end

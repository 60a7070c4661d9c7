-- session.lua: the helpers of the session transitions, prepended after prelude.lua.
--
-- Every session transition gets the session's keys, all under its hash tag {<sessionId>} (one
-- Cluster slot; the global keys some scripts add are the documented exception, see
-- docs/redis-schema.md):
--   K.session (hash)   K.todos (todo ids)   K.agents (agent ids)   K.pending (todo ids)
--   K.events (stream)
-- the channel C.live (its events as they are recorded), and in CALL.session: todoPrefix and
-- agentPrefix (a TODO's or agent's hash key is the prefix followed by its id), eventsMaxlen
-- (the stream's approximate cap) and publish ('PUBLISH', or 'SPUBLISH' on a Cluster: the
-- session's channels are in its slot, so only the node that owns it carries them).
local SESSION = CALL.session

local function todo_key(tid) return SESSION.todoPrefix .. tid end
local function agent_key(aid) return SESSION.agentPrefix .. aid end

-- A JSON string literal (quoted, escaped).
local function jstr(s) return cjson.encode(s) end

-- Records one event: takes the session's next seq, appends entry <seq>-0 to the capped stream and
-- publishes the envelope {"seq","event","data"} on the live channel. `payload` is a JSON object
-- without seq; seq is spliced in as its last field. Returns the seq.
local function emit(name, payload)
  local seq = redis.call('HINCRBY', K.session, 'seq', 1)
  local data
  if payload == '{}' then
    data = '{"seq":' .. seq .. '}'
  else
    data = string.sub(payload, 1, -2) .. ',"seq":' .. seq .. '}'
  end
  redis.call('XADD', K.events, 'MAXLEN', '~', SESSION.eventsMaxlen, seq .. '-0',
    'event', name, 'data', data)
  redis.call(SESSION.publish, C.live,
    '{"seq":' .. seq .. ',"event":"' .. name .. '","data":' .. data .. '}')
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
  local sid = redis.call('HGET', K.session, 'id')
  redis.call('HSET', K.session, 'status', status, 'finishedAt', now_ms())
  local payload = '{"sessionId":"' .. sid .. '","status":"' .. status .. '"'
  if err then
    redis.call('HSET', K.session, 'error', err)
    payload = payload .. ',"error":' .. jstr(err)
  end
  emit('session:complete', payload .. '}')
  local retention = tonumber(redis.call('HGET', K.session, 'retention')) or 0
  if retention > 0 then
    for _, tid in ipairs(redis.call('LRANGE', K.todos, 0, -1)) do
      redis.call('PEXPIRE', todo_key(tid), retention)
    end
    for _, aid in ipairs(redis.call('LRANGE', K.agents, 0, -1)) do
      redis.call('PEXPIRE', agent_key(aid), retention)
    end
    for _, key in ipairs({K.session, K.todos, K.agents, K.pending, K.events}) do
      redis.call('PEXPIRE', key, retention)
    end
  end
end

-- The agent hash's fencing token equals `token`.
local function holds(aid, token)
  return redis.call('HGET', agent_key(aid), 'token') == token
end

-- The agent has nothing left to do (next_todo found nothing pending): it ends, and the last
-- agent to end ends the session. Returns how: {ending='terminated'} (others still run),
-- {ending='sessionEnded', status='completed'|'failed'} (this call ended the session;
-- session:complete emitted once), or {ending='already'} (a retried call).
local function end_agent(aid)
  if redis.call('HGET', agent_key(aid), 'status') == 'terminated' then
    return {ending = 'already'}
  end
  terminate(aid)
  for _, other in ipairs(redis.call('LRANGE', K.agents, 0, -1)) do
    if redis.call('HGET', agent_key(other), 'status') ~= 'terminated' then
      return {ending = 'terminated'}
    end
  end
  if redis.call('HGET', K.session, 'status') ~= 'running' then return {ending = 'terminated'} end
  local todos = redis.call('LRANGE', K.todos, 0, -1)
  local failed = 0
  for _, tid in ipairs(todos) do
    if redis.call('HGET', todo_key(tid), 'status') ~= 'completed' then failed = failed + 1 end
  end
  if failed > 0 then
    finish_session('failed', failed .. ' of ' .. #todos .. ' TODOs failed')
    return {ending = 'sessionEnded', status = 'failed'}
  end
  finish_session('completed', nil)
  return {ending = 'sessionEnded', status = 'completed'}
end

-- The agent's next TODO (the plan's getNextPendingTask + assignTask), for a caller that has
-- checked the fencing token. Returns
--   {outcome='assigned', todoId, description, attempts (failed attempts so far)},
--   {outcome='done', ending=…} as end_agent: nothing pending, so the agent ended in the same step
--     (saving the runner a round trip per agent), or
--   {outcome='ended', status} (the session is not running; status absent: no session).
-- A TODO whose attempts reached `max` is failed (task:failed) instead of assigned. Idempotent:
-- an agent that already holds an assigned TODO (a retried call) gets that one back.
local function next_todo(aid, max)
  local akey = agent_key(aid)
  local status = redis.call('HGET', K.session, 'status')
  if status ~= 'running' then return {outcome = 'ended', status = status or nil} end
  local current = redis.call('HGET', akey, 'currentTaskId')
  if current and current ~= '' then
    local t = redis.call('HMGET', todo_key(current),
      'status', 'assignedTo', 'description', 'attempts')
    if t[1] == 'assigned' and t[2] == aid then
      return {outcome = 'assigned', todoId = current, description = t[3],
        attempts = tonumber(t[4]) or 0}
    end
  end
  while true do
    local tid = redis.call('LPOP', K.pending)
    if not tid then
      local ended = end_agent(aid)
      ended.outcome = 'done'
      return ended
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
        return {outcome = 'assigned', todoId = tid, description = t[3], attempts = attempts}
      end
    end
  end
end

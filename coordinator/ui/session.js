// Session: the board of TODOs, one card per agent with its live feed and stream, progress,
// Cancel, and the raw event log. Joins with {sessionId, since} and applies an event only if
// its seq is above the last one applied, so a reload, a network drop, an eviction or a
// coordinator restart resumes without a gap or a duplicate.
import { fill, h, httpUrl, shortId, statusBadge } from './dom.js';
import { Unauthorized, get, post } from './api.js';
import { connect, isAuthError } from './live.js';

export const FEED_LINES = 200; // per agent
// Raw event log rows kept live; older ones via "load older". A table row per event is the
// page's most expensive part at hundreds of events per second (scripts/bench.sh --only UI).
export const LOG_ROWS = 200;
// Events replayed when the page opens, to fill the feeds and the log.
const HISTORY = 2000;
const COLUMNS = ['pending', 'assigned', 'completed', 'failed'];

export function sessionView(ctx, id) {
  const view = new SessionPage(ctx, id);
  view.start();
  return view;
}

class SessionPage {
  constructor(ctx, id) {
    this.ctx = ctx;
    this.id = id;
    this.session = null; // the board's state, as of boardSeq
    this.boardSeq = 0;
    this.lastSeq = 0; // the last event applied to feeds and log
    this.oldestSeq = null; // the oldest event in the log
    this.agentCards = new Map();
    this.pendingLog = [];
    this.dirty = false;
    this.frame = 0;
    this.socket = null;
    this.stopped = false;
  }

  async start() {
    let snapshot;
    try {
      snapshot = await get(`/api/sessions/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (e instanceof Unauthorized) return this.ctx.unauthorized(e.message);
      fill(this.ctx.main, h('h1', {}, 'Session'), h('p', { class: 'error', id: 'page-error' }, e.message));
      return;
    }
    if (this.stopped) return;
    this.layout();
    this.setBoard(snapshot);
    // Feeds and log start with the most recent events; older ones are a click away.
    this.lastSeq = Math.max(0, snapshot.lastSeq - HISTORY);
    this.oldestSeq = this.lastSeq + 1;
    this.render();
    this.listen();
  }

  stop() {
    this.stopped = true;
    cancelAnimationFrame(this.frame);
    if (this.socket) this.socket.close();
  }

  layout() {
    this.el = {
      title: h('h1', {}, 'Session ', h('span', { class: 'mono' }, this.id)),
      banner: h('div', { class: 'banner', id: 'banner', role: 'status', hidden: true }),
      summary: h('div', { class: 'summary', id: 'summary' }),
      cancel: h('button', { id: 'cancel', class: 'danger', onclick: () => this.cancel() }, 'Cancel'),
      cancelError: h('span', { class: 'error', id: 'cancel-error' }),
      board: h('div', { class: 'board', id: 'board' }),
      agents: h('div', { class: 'agents', id: 'agents' }),
      older: h('button', { id: 'load-older', onclick: () => this.loadOlder() }, 'Load older'),
      log: h('tbody', { id: 'log' }),
    };
    const e = this.el;
    fill(this.ctx.main,
      e.banner, e.title,
      h('div', { class: 'toolbar' }, e.summary, e.cancel, e.cancelError),
      h('h2', {}, 'TODOs'), e.board,
      h('h2', {}, 'Agents'), e.agents,
      h('h2', {}, 'Events'),
      h('div', { class: 'log-tools' }, e.older),
      h('div', { class: 'log-box' }, h('table', { class: 'log' },
        h('colgroup', {}, h('col', { class: 'c-seq' }), h('col', { class: 'c-event' }), h('col', {})),
        h('thead', {}, h('tr', {}, h('th', {}, 'seq'), h('th', {}, 'event'), h('th', {}, 'data'))),
        e.log)));
  }

  setBoard(session) {
    this.session = session;
    this.boardSeq = session.lastSeq;
    this.dirty = true;
  }

  listen() {
    const socket = connect();
    this.socket = socket;
    socket.on('connect', () => this.join());
    socket.on('disconnect', () => this.banner('Connection lost — reconnecting…'));
    socket.on('connect_error', (err) => {
      if (isAuthError(err)) {
        socket.close();
        this.ctx.unauthorized(err.message);
      } else {
        this.banner(`Reconnecting… (${err.message})`);
      }
    });
    socket.on('connection:evicted', (n) => this.banner(`This page fell behind (${n.reason}) — reconnecting…`));
    socket.onAny((name, data) => {
      if (data && typeof data.seq === 'number') this.onEvent(name, data);
    });
  }

  join() {
    const payload = { sessionId: this.id, since: this.lastSeq };
    this.socket.timeout(15000).emit('session:join', payload, (err, ack) => {
      if (this.stopped) return;
      if (err || !ack || !ack.ok) {
        this.banner(`Joining failed (${err ? 'no answer' : ack && ack.error}) — retrying…`);
        setTimeout(() => this.socket.connected && this.join(), 1000);
        return;
      }
      // The snapshot is the truth as of ack.lastSeq; later events come on top of it.
      if (ack.lastSeq >= this.boardSeq) this.setBoard(ack.session);
      document.body.dataset.joined = '1';
      this.banner(ack.truncated ? 'Some events were already trimmed from the stream; the board is complete.' : '');
      this.schedule();
    });
  }

  banner(text) {
    if (!this.el) return;
    this.el.banner.textContent = text;
    this.el.banner.hidden = !text;
  }

  onEvent(name, data) {
    if (data.seq <= this.lastSeq) return; // already applied: a replay overlap
    this.lastSeq = data.seq;
    if (data.seq > this.boardSeq) {
      if (applyEvent(this.session, name, data)) this.dirty = true;
      this.boardSeq = data.seq;
    }
    if (name === 'agent:thinking' || name === 'agent:reasoning') this.feedLine(name, data);
    this.pendingLog.push({ seq: data.seq, event: name, data });
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    if (this.stopped) return;
    if (this.dirty) {
      this.dirty = false;
      this.renderSummary();
      this.renderBoard();
      this.renderAgents();
    }
    for (const card of this.agentCards.values()) card.flush();
    this.flushLog();
    document.body.dataset.lastSeq = String(this.lastSeq);
  }

  renderSummary() {
    const s = this.session;
    const done = s.todos.filter((t) => t.status === 'completed').length;
    fill(this.el.summary,
      statusBadge(s.status),
      h('progress', { value: done, max: Math.max(1, s.todos.length) }),
      h('span', { class: 'count', id: 'progress' }, `${done}/${s.todos.length} TODOs done`),
      h('span', { class: 'muted' }, ` · ${s.agentCount} ${s.agentCount === 1 ? 'agent' : 'agents'}`),
      h('p', { class: 'prompt-text' }, s.prompt),
      s.error ? h('div', { class: 'error', id: 'session-error' }, s.error) : null);
    this.el.cancel.hidden = !(s.status === 'running' || s.status === 'decomposing');
  }

  renderBoard() {
    // A cancelled or failed session runs nothing more: its unfinished TODOs stay as they were
    // recorded (the API keeps their status) and are shown as not run.
    const ended = this.session.status === 'cancelled' || this.session.status === 'failed';
    const columns = COLUMNS.map((status) => {
      const todos = this.session.todos.filter((t) => t.status === status);
      const notRun = ended && (status === 'pending' || status === 'assigned') && todos.length > 0;
      return h('section', { class: `column c-${status}`, 'data-column': status },
        h('h3', {}, status, ' ', h('span', { class: 'count' }, String(todos.length)),
          notRun ? h('span', { class: 'muted small not-run-note' }, ` not run (session ${this.session.status})`) : null),
        todos.map((t) => todoCard(t, notRun)));
    });
    fill(this.el.board, ...columns);
  }

  renderAgents() {
    for (const agent of this.session.agents) {
      let card = this.agentCards.get(agent.id);
      if (!card) {
        card = new AgentCard(agent.id);
        this.agentCards.set(agent.id, card);
        this.el.agents.append(card.el);
      }
      card.update(agent, this.session.todos);
    }
  }

  feedLine(name, data) {
    let card = this.agentCards.get(data.agentId);
    if (!card) {
      card = new AgentCard(data.agentId);
      this.agentCards.set(data.agentId, card);
      this.el.agents.append(card.el);
    }
    card.push(name === 'agent:thinking' ? 'thinking' : 'reasoning',
      name === 'agent:thinking' ? data.action : data.reasoning, data.seq);
  }

  flushLog() {
    if (!this.pendingLog.length) return;
    const rows = this.pendingLog.slice(-LOG_ROWS).map(logRow);
    this.pendingLog = [];
    this.el.log.append(...rows);
    while (this.el.log.childElementCount > LOG_ROWS) this.el.log.firstElementChild.remove();
    const first = this.el.log.firstElementChild;
    if (first) this.oldestSeq = Number(first.dataset.seq);
    this.el.older.hidden = !(this.oldestSeq > 1);
  }

  async loadOlder() {
    try {
      const q = new URLSearchParams({ before: String(this.oldestSeq), limit: '200' });
      const page = await get(`/api/sessions/${encodeURIComponent(this.id)}/events?${q}`);
      const rows = page.events.map(logRow).reverse();
      this.el.log.prepend(...rows);
      if (page.events.length) this.oldestSeq = page.events[page.events.length - 1].seq;
      this.el.older.hidden = !(this.oldestSeq > 1) || page.truncated || !page.events.length;
    } catch (e) {
      if (e instanceof Unauthorized) return this.ctx.unauthorized(e.message);
      this.banner(e.message);
    }
  }

  async cancel() {
    this.el.cancelError.textContent = '';
    try {
      await post(`/api/sessions/${encodeURIComponent(this.id)}/cancel`);
    } catch (e) {
      if (e instanceof Unauthorized) return this.ctx.unauthorized(e.message);
      this.el.cancelError.textContent = e.message;
    }
  }
}

function logRow(e) {
  return h('tr', { 'data-seq': e.seq, 'data-event': e.event },
    h('td', { class: 'mono' }, String(e.seq)),
    h('td', {}, e.event),
    h('td', { class: 'mono data' }, JSON.stringify(e.data)));
}

function todoCard(t, notRun) {
  return h('article', { class: notRun ? 'todo not-run' : 'todo', 'data-todo': t.id, 'data-status': t.status },
    h('p', { class: 'desc' }, t.description),
    t.assignedTo ? h('p', { class: 'muted small' }, `agent ${shortId(t.assignedTo)}`) : null,
    t.result ? h('p', { class: 'result' }, t.result) : null,
    t.error ? h('p', { class: 'error small' }, t.error) : null,
    t.attempts ? h('p', { class: 'muted small' }, `attempts: ${t.attempts}`) : null);
}

// The board follows the events the same way the server's scripts change the session; every
// join's snapshot replaces it, so a difference could only last until the next join. Answers
// whether the board changed (feed lines do not change it).
export function applyEvent(s, name, d) {
  if (name === 'agent:thinking' || name === 'agent:reasoning') return false;
  const todo = (id) => s.todos.find((t) => t.id === id);
  const agent = (id) => s.agents.find((a) => a.id === id);
  const setAgent = (id, fields) => { const a = agent(id); if (a) Object.assign(a, fields); };
  switch (name) {
    case 'task:created': {
      const { seq, ...t } = d;
      if (!todo(t.id)) s.todos.push(t);
      break;
    }
    case 'task:assigned':
      Object.assign(todo(d.todoId) || {}, { status: 'assigned', assignedTo: d.agentId });
      setAgent(d.agentId, { status: 'working', currentTaskId: d.todoId });
      break;
    case 'task:completed':
      Object.assign(todo(d.todoId) || {}, { status: 'completed', result: d.result ?? null });
      setAgent(d.agentId, { status: 'idle', currentTaskId: null });
      break;
    case 'task:failed':
    case 'task:retry':
      Object.assign(todo(d.todoId) || {}, {
        status: name === 'task:failed' ? 'failed' : 'pending',
        error: d.error, attempts: d.attempts,
        assignedTo: name === 'task:failed' ? d.agentId : null,
      });
      setAgent(d.agentId, { status: 'idle', currentTaskId: null });
      break;
    case 'agent:stream_ready':
      setAgent(d.agentId, { streamUrl: d.streamUrl, sandboxId: d.sandboxId });
      break;
    case 'agent:terminated':
      setAgent(d.agentId, { status: 'terminated', currentTaskId: null });
      break;
    case 'session:complete':
      s.status = d.status || 'completed';
      if (d.error) s.error = d.error;
      break;
    default:
  }
  return true;
}

class AgentCard {
  constructor(id) {
    this.id = id;
    this.head = h('div', { class: 'agent-head' });
    this.stream = h('div', { class: 'stream' });
    this.streamUrl = undefined;
    this.feed = h('ol', { class: 'feed', 'data-feed': id });
    this.pending = [];
    // A column-reverse scroller stays pinned to its newest line without reading layout.
    this.el = h('article', { class: 'agent', 'data-agent': id }, this.head, this.stream,
      h('div', { class: 'feed-scroll' }, this.feed));
  }

  update(agent, todos) {
    const task = agent.currentTaskId && todos.find((t) => t.id === agent.currentTaskId);
    this.el.dataset.status = agent.status;
    fill(this.head,
      h('h3', { class: 'mono' }, shortId(agent.id)), statusBadge(agent.status),
      h('p', { class: 'current small' }, task ? `working on: ${task.description}` : 'no current TODO'));
    if (agent.streamUrl !== this.streamUrl) {
      this.streamUrl = agent.streamUrl;
      fill(this.stream, ...streamView(agent.streamUrl));
    }
  }

  push(kind, text, seq) {
    this.pending.push(h('li', { class: kind, 'data-seq': seq }, text));
  }

  flush() {
    if (!this.pending.length) return;
    // The benchmark (scripts/bench.sh --only UI) times each line from the worker to this frame.
    if (window.swarmqRenderProbe) window.swarmqRenderProbe(this.pending.map((li) => li.textContent));
    this.feed.append(...this.pending);
    this.pending = [];
    while (this.feed.childElementCount > FEED_LINES) this.feed.firstElementChild.remove();
  }
}

// The agent's screen: embedded only when its URL is http(s); anything else is shown as text.
function streamView(raw) {
  // about:blank is how a worker says it has no screen (the offline demo does).
  if (!raw || raw === 'about:blank') return [];
  const url = httpUrl(raw);
  if (!url) return [h('p', { class: 'small unsafe-url' }, 'stream (not embedded): ', h('code', {}, raw))];
  return [
    h('iframe', { src: url, title: 'agent stream', sandbox: 'allow-scripts allow-same-origin', loading: 'lazy', referrerpolicy: 'no-referrer' }),
    h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', class: 'small' }, 'open'),
  ];
}

// Sessions: the prompt box (the API's 400 messages beside the field they name) and the list,
// newest first, refreshed every few seconds on the first page, paged with the API's cursor.
import { fill, h, age, shortId, statusBadge } from './dom.js';
import { ApiError, Unauthorized, get, post } from './api.js';

const REFRESH_MS = 2000;
const FINISHED = new Set(['completed', 'failed', 'cancelled']);

export function sessionsView(ctx) {
  const params = new URLSearchParams(location.search);
  const cursor = params.get('cursor');
  const list = h('tbody', { id: 'session-rows' });
  const more = h('div', { class: 'pager' });
  const listError = h('p', { class: 'error', id: 'list-error', hidden: true });
  ctx.main.append(
    h('h1', {}, 'Sessions'),
    createForm(ctx),
    h('h2', {}, cursor ? 'Older sessions' : 'Recent sessions'),
    listError,
    h('table', { class: 'sessions' },
      h('thead', {}, h('tr', {}, ['Session', 'Prompt', 'Status', 'Progress', 'Agents', 'Age']
        .map((c) => h('th', {}, c)))),
      list),
    more);
  const progress = new Map();
  let timer = null;
  let stopped = false;
  const refresh = async () => {
    try {
      const q = new URLSearchParams({ limit: '20' });
      if (cursor) q.set('cursor', cursor);
      const page = await get(`/api/sessions?${q}`);
      await fillProgress(page.sessions, progress);
      if (stopped) return;
      listError.hidden = true;
      fill(list, ...page.sessions.map((s) => row(s, progress.get(s.id))));
      fill(more,
        cursor ? h('a', { href: '/', 'data-nav': true }, 'Newest') : null,
        page.nextCursor
          ? h('a', { href: `/?cursor=${encodeURIComponent(page.nextCursor)}`, 'data-nav': true, id: 'older' }, 'Older →')
          : null);
    } catch (e) {
      if (e instanceof Unauthorized) return ctx.unauthorized(e.message);
      listError.textContent = e.message;
      listError.hidden = false;
    }
    if (!stopped && !cursor) timer = setTimeout(refresh, REFRESH_MS);
  };
  refresh();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// done/total TODOs per session; a finished session's is read once.
async function fillProgress(sessions, cache) {
  await Promise.all(sessions.map(async (s) => {
    const known = cache.get(s.id);
    if (known && known.final) return;
    try {
      const full = await get(`/api/sessions/${s.id}`);
      const done = full.todos.filter((t) => t.status === 'completed').length;
      cache.set(s.id, { done, total: full.todos.length, final: FINISHED.has(full.status) });
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
    }
  }));
}

function row(s, p) {
  const href = `/sessions/${s.id}`;
  return h('tr', { 'data-session': s.id },
    h('td', {}, h('a', { href, 'data-nav': true, class: 'mono' }, shortId(s.id))),
    h('td', { class: 'prompt', title: s.prompt }, s.prompt),
    h('td', {}, statusBadge(s.status), s.error ? h('div', { class: 'error small' }, s.error) : null),
    h('td', { class: 'progress' }, p ? `${p.done}/${p.total}` : '…'),
    h('td', {}, String(s.agentCount)),
    h('td', { title: new Date(s.createdAt).toISOString() }, age(s.createdAt)));
}

function createForm(ctx) {
  const prompt = h('textarea', { id: 'prompt', name: 'prompt', rows: 3, placeholder: 'What should the swarm do?' });
  const agents = h('input', { id: 'agentCount', name: 'agentCount', type: 'number', value: '2', min: '1' });
  const promptError = h('p', { class: 'error field-error', id: 'prompt-error', hidden: true });
  const agentsError = h('p', { class: 'error field-error', id: 'agentCount-error', hidden: true });
  const formError = h('p', { class: 'error', id: 'form-error', hidden: true });
  const button = h('button', { type: 'submit', id: 'create' }, 'Start swarm');
  const show = (el, msg) => {
    el.textContent = msg || '';
    el.hidden = !msg;
    const field = el === promptError ? prompt : el === agentsError ? agents : null;
    if (field) field.setAttribute('aria-invalid', msg ? 'true' : 'false');
  };
  prompt.setAttribute('aria-describedby', 'prompt-error');
  agents.setAttribute('aria-describedby', 'agentCount-error');
  const submit = async (e) => {
    e.preventDefault();
    [promptError, agentsError, formError].forEach((el) => show(el, ''));
    const raw = agents.value.trim();
    const count = raw === '' ? null : Number(raw);
    button.disabled = true;
    try {
      const res = await post('/api/sessions', { prompt: prompt.value, agentCount: count });
      ctx.navigate(`/sessions/${res.sessionId}`);
    } catch (err) {
      if (err instanceof Unauthorized) return ctx.unauthorized(err.message);
      const msg = err instanceof ApiError ? err.message : String(err);
      if (/^prompt/.test(msg)) show(promptError, msg);
      else if (/agentCount/.test(msg)) show(agentsError, msg);
      else show(formError, msg);
    } finally {
      button.disabled = false;
    }
  };
  return h('form', { class: 'create', id: 'create-form', novalidate: true, onsubmit: submit },
    h('div', { class: 'field' }, h('label', { for: 'prompt' }, 'Prompt'), prompt, promptError),
    h('div', { class: 'field narrow' }, h('label', { for: 'agentCount' }, 'Agents'), agents, agentsError),
    h('div', { class: 'field actions' }, button),
    formError);
}

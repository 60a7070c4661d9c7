// Cluster: runners, the ready queue, sessions by status and a chart of TODOs completed per
// second and queue depth over the last minutes. All of it is read from Redis through the API,
// so every coordinator behind a load balancer shows the same.
import { fill, h, svg } from './dom.js';
import { Unauthorized, get } from './api.js';

const REFRESH_MS = 2000;
const SERIES_SECS = 300;
const STATUSES = ['decomposing', 'running', 'completed', 'failed', 'cancelled'];

export function clusterView(ctx) {
  const el = {
    error: h('p', { class: 'error', id: 'cluster-error', hidden: true }),
    totals: h('div', { class: 'totals', id: 'totals' }),
    runners: h('tbody', { id: 'runner-rows' }),
    chart: h('div', { class: 'chart', id: 'chart' }),
  };
  ctx.main.append(
    h('h1', {}, 'Cluster'), el.error, el.totals,
    h('h2', {}, 'Throughput and queue, last 5 minutes'), el.chart,
    h('h2', {}, 'Runners'),
    h('table', { class: 'runners' },
      h('thead', {}, h('tr', {}, ['Runner', 'Host', 'Slots', 'Busy', 'Draining', 'Last beat']
        .map((c) => h('th', {}, c)))),
      el.runners));
  let timer = null;
  let stopped = false;
  const refresh = async () => {
    try {
      const [runners, stats, series] = await Promise.all([
        get('/api/runners'), get('/api/stats'), get(`/api/stats/series?secs=${SERIES_SECS}`)]);
      if (stopped) return;
      el.error.hidden = true;
      fill(el.totals, ...totals(stats));
      fill(el.runners, ...runners.runners.map(runnerRow));
      fill(el.chart, chart(series.points));
    } catch (e) {
      if (e instanceof Unauthorized) return ctx.unauthorized(e.message);
      el.error.textContent = e.message;
      el.error.hidden = false;
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  };
  refresh();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

function stat(label, value, key) {
  return h('div', { class: 'stat', 'data-stat': key }, h('span', { class: 'value' }, String(value)), h('span', { class: 'label' }, label));
}

function totals(stats) {
  const s = stats.sessions;
  return [
    stat('ready queue', stats.readyQueue, 'readyQueue'),
    stat('live runners', stats.runners.live, 'runnersLive'),
    stat('busy / slots', `${stats.runners.busy} / ${stats.runners.slots}`, 'slots'),
    stat('pending TODOs', s.pendingTodos, 'pendingTodos'),
    ...STATUSES.map((k) => stat(`${k} sessions`, s[k], `sessions-${k}`)),
  ];
}

function runnerRow(r) {
  return h('tr', { 'data-runner': r.id, class: r.alive ? '' : 'dead' },
    h('td', { class: 'mono' }, r.id),
    h('td', {}, r.host || '—'),
    h('td', {}, String(r.slots)),
    h('td', {}, String(r.busy)),
    h('td', {}, r.draining ? 'yes' : 'no'),
    h('td', { class: 'beat' }, r.alive ? `${r.secondsSinceBeat} s ago` : 'lease expired'));
}

const W = 600;
const H = 140;

// Two lines over the same seconds, each scaled to its own maximum (both maxima are labelled).
// A second without a queue sample carries the previous sample forward.
function chart(points) {
  const done = points.map((p) => p.completed);
  let last = 0;
  const ready = points.map((p) => (last = p.ready ?? last));
  const line = (values, cls) => {
    const max = Math.max(1, ...values);
    const step = W / Math.max(1, values.length - 1);
    const coords = values.map((v, i) => `${(i * step).toFixed(1)},${(H - (v / max) * (H - 10)).toFixed(1)}`);
    return svg('polyline', { class: cls, points: coords.join(' ') });
  };
  const total = done.reduce((a, b) => a + b, 0);
  return h('figure', {},
    svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'TODOs completed per second and ready-queue depth' },
      line(ready, 'ready'), line(done, 'done')),
    h('figcaption', {},
      h('span', { class: 'key done' }, `TODOs completed/s (max ${Math.max(0, ...done)}, ${total} in 5 min)`),
      h('span', { class: 'key ready' }, `ready-queue depth (max ${Math.max(0, ...ready)}, now ${ready[ready.length - 1] ?? 0})`)));
}

// The dashboard's entry point: routes by path (one URL per page, so a link can be shared and
// reloaded), and shows the login prompt whenever the API answers 401.
import { fill, h } from './dom.js';
import { setToken, token } from './api.js';
import { sessionsView } from './sessions.js';
import { sessionView } from './session.js';
import { clusterView } from './cluster.js';

const main = document.getElementById('view');
const signout = document.getElementById('signout');
let current = null;

function navigate(path) {
  history.pushState(null, '', path);
  route();
}

function stop() {
  if (current) current.stop();
  current = null;
}

function route() {
  stop();
  main.replaceChildren();
  signout.hidden = !token();
  const ctx = { main, navigate, unauthorized: showLogin };
  const path = location.pathname;
  const session = path.match(/^\/sessions\/([^/]+)$/);
  let page = 'sessions';
  if (session) {
    current = sessionView(ctx, decodeURIComponent(session[1]));
    page = 'session';
  } else if (path === '/cluster') {
    current = clusterView(ctx);
    page = 'cluster';
  } else if (path === '/' || path === '/sessions') {
    current = sessionsView(ctx);
  } else {
    page = 'not-found';
    fill(main, h('section', { class: 'not-found' },
      h('h1', {}, 'Not found'),
      h('p', {}, 'No page at ', h('code', {}, path), '. ',
        h('a', { href: '/', 'data-nav': '' }, 'Back to the sessions'), '.')));
  }
  document.body.dataset.page = page;
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
}

function showLogin(message) {
  stop();
  document.body.dataset.page = 'login';
  const input = h('input', {
    type: 'password', id: 'token', name: 'token', autocomplete: 'current-password',
    'aria-label': 'API token',
  });
  const submit = (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    route();
  };
  fill(main, h('form', { class: 'login', id: 'login', onsubmit: submit },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'This swarmq deployment needs its API token (SWARMQ_API_TOKEN).'),
    token() ? h('p', { class: 'error', id: 'login-error' }, message || 'invalid token') : null,
    h('label', { for: 'token' }, 'API token'),
    input,
    h('button', { type: 'submit' }, 'Sign in')));
  input.focus();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-nav]');
  if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
signout.addEventListener('click', () => {
  setToken('');
  showLogin();
});
window.addEventListener('popstate', route);
route();

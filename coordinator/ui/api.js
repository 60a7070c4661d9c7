// The HTTP API, with the token (if any) as a bearer header. The token lives in sessionStorage
// only: never in a URL, a cookie or a log.

const KEY = 'swarmq.apiToken';

// A share link (`/sessions/<id>#share=<token>`, printed by `swarmq share`): its read-only
// token is kept like a signed-in one, and taken out of the address bar at once so it is not
// bookmarked or copied along with the page's URL. (A fragment never reaches a server.)
const shared = new URLSearchParams(location.hash.slice(1)).get('share');
if (shared) {
  sessionStorage.setItem(KEY, shared);
  history.replaceState(null, '', location.pathname + location.search);
}

export function token() {
  return sessionStorage.getItem(KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API wants a token we do not have (or ours is wrong).
export class Unauthorized extends ApiError {}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the coordinator (${e.message})`);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  const message = (data && data.error) || `${res.status} ${res.statusText}`;
  if (res.status === 401) throw new Unauthorized(401, message);
  if (!res.ok) throw new ApiError(res.status, message);
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);

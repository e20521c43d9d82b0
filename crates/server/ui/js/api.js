// The only way the dashboard reaches the server: the public admin API under /admin/v1, plus
// /ui/login and /ui/logout. The session cookie is HttpOnly; every write carries the CSRF token
// from the readable `signalbox_csrf` cookie in `x-signalbox-csrf`.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `request failed with status ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.param = e.param || null;
    this.details = e.details || [];
  }
}

export function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === 'signalbox_csrf') return decodeURIComponent(v.join('='));
  }
  return '';
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** One call. Answers {status, headers, body} for 2xx; throws ApiError otherwise. */
export async function call(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['x-signalbox-csrf'] = csrfToken();
  const url = path.startsWith('/') ? path : `/admin/v1/${path}`;
  const resp = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let parsed = null;
  const text = await resp.text();
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, parsed);
    if (resp.status === 401 && !path.startsWith('/ui/')) onUnauthorized(err);
    throw err;
  }
  return { status: resp.status, headers: resp.headers, body: parsed };
}

export const api = {
  get: async (p) => (await call('GET', p)).body,
  post: async (p, b = {}) => (await call('POST', p, b)).body,
  put: async (p, b, h) => (await call('PUT', p, b, h)).body,
  patch: async (p, b, h) => (await call('PATCH', p, b, h)).body,
  del: async (p, h) => (await call('DELETE', p, undefined, h)).body,
};

/** Path of a project's collection or object: proj('default', 'routes', 'x') */
export function proj(project, ...parts) {
  return ['projects', project, ...parts].map(encodeURIComponent).join('/');
}

/** A query string from the non-empty entries of an object. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

export async function login(username, password) {
  return (await call('POST', '/ui/login', { username, password })).body;
}

export async function logout() {
  return (await call('POST', '/ui/logout', {})).body;
}

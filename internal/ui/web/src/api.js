// The API client of the explorer: every request carries the API version and the user's
// credential, and a 401 asks the user to sign in (see onSignIn) and then retries.

export const apiVersion = '2023-10-31';
const tokenKey = 'twinflow.token';

let signIn = null;

/** onSignIn sets the function asked for a credential when the server answers 401. It gets
 *  the server's message and returns a promise of true once a credential is set, false when
 *  the user gave up. */
export function onSignIn(fn) {
  signIn = fn;
}

export function token() {
  return sessionStorage.getItem(tokenKey) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(tokenKey, t.trim());
  else sessionStorage.removeItem(tokenKey);
}

/** ApiError is a failed request: its HTTP status, ADT error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** withVersion returns path with the api-version parameter, unless it has one. */
export function withVersion(path) {
  if (/[?&]api-version=/.test(path)) return path;
  return path + (path.includes('?') ? '&' : '?') + 'api-version=' + apiVersion;
}

/** authHeaders returns the headers that carry the credential, if any. */
export function authHeaders() {
  const t = token();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

async function readError(res) {
  let code = res.headers.get('x-ms-error-code') || String(res.status);
  let message = res.statusText || `HTTP ${res.status}`;
  let details = [];
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      details = (body.error.details || []).map((d) => d.message).filter(Boolean);
    }
  } catch {
    // A body that is not ADT's error body: the status says enough.
  }
  return new ApiError(res.status, code, message, details);
}

/** fetchAuthed sends a request with the credential, asking the user to sign in on a 401
 *  and retrying; it returns the Response of any other status. */
export async function fetchAuthed(path, init = {}) {
  for (;;) {
    const headers = { ...authHeaders(), ...(init.headers || {}) };
    const res = await fetch(withVersion(path), { ...init, headers });
    if (res.status !== 401 || !signIn) return res;
    const err = await readError(res);
    if (!(await signIn(err.message))) throw err;
  }
}

/** request sends method path with body (JSON-encoded unless a string) and returns
 *  {data, headers, status}; a status of 400 and above throws ApiError. */
export async function request(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    if (!init.headers['Content-Type']) init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetchAuthed(path, init);
  if (!res.ok) throw await readError(res);
  const text = res.status === 204 ? '' : await res.text();
  return { data: text ? JSON.parse(text) : null, headers: res.headers, status: res.status };
}

/** api is request returning the body alone. */
export async function api(method, path, opts) {
  return (await request(method, path, opts)).data;
}

/** nextPath turns a nextLink (an absolute URL) into a path on this server. */
export function nextPath(link) {
  const u = new URL(link, location.href);
  return u.pathname + u.search;
}

/** listAll follows nextLink from path and returns every value. */
export async function listAll(path) {
  const out = [];
  let next = path;
  while (next) {
    const page = await api('GET', next);
    out.push(...(page.value || []));
    next = page.nextLink ? nextPath(page.nextLink) : null;
  }
  return out;
}

/** queryAll runs an ADT query, following continuationToken, and returns every item.
 *  asOf, when set, queries the graph as it stood then. onPage gets the count so far and
 *  the page's items, as each page arrives. */
export async function queryAll(query, { asOf, onPage } = {}) {
  const items = [];
  let token = null;
  do {
    const body = { query };
    if (asOf) body.asOf = asOf;
    if (token) body.continuationToken = token;
    // The largest page the API serves (1,000) means the fewest round trips.
    const page = await api('POST', '/query', { body, headers: { 'max-items-per-page': '1000' } });
    items.push(...(page.value || []));
    token = page.continuationToken || null;
    if (onPage) onPage(items.length, page.value || []);
  } while (token);
  return items;
}

/** enc encodes one path segment. */
export const enc = encodeURIComponent;

/** describe renders an error for the user: the server's message and its details. */
export function describe(err) {
  if (err instanceof ApiError) {
    const d = err.details.length ? '\n' + err.details.join('\n') : '';
    return `${err.code} (${err.status}): ${err.message}${d}`;
  }
  return String(err && err.message ? err.message : err);
}

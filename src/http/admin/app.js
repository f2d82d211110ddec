// trex admin page. No framework and no build step: a small DOM helper, an MCP client over the
// web session (cookie + X-Trex-Csrf), and one function per page. The page holds no rules:
// every action is a tool call of the admin MCP server (or the migrations server), so the
// server's checks and audit rows apply to it exactly as to any other client.

const root = document.getElementById('app');
const BASE = root.dataset.base;
const S = { me: null, csrf: null, rowLimit: 0, version: '' };

// ---------- DOM ----------
let uid = 0;
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const when = (t) => (t ? new Date(t).toLocaleString() : '—');
const errBox = () => h('div', { class: 'error', role: 'alert' });
function badge(text, kind) { return h('span', { class: 'badge' + (kind ? ' ' + kind : '') }, text); }

/** A labelled control. spec: {name, label, type, options, value, required, placeholder, wide} */
function field(spec) {
  const id = 'f' + (++uid);
  let input;
  if (spec.type === 'select') {
    input = h('select', { id, name: spec.name },
      spec.options.map((o) => {
        const [v, t] = Array.isArray(o) ? o : [o, o];
        return h('option', { value: v, selected: String(spec.value ?? '') === String(v) }, t);
      }));
  } else if (spec.type === 'textarea') {
    input = h('textarea', { id, name: spec.name, required: spec.required, placeholder: spec.placeholder, rows: spec.rows || 5 });
    if (spec.value) input.value = spec.value;
  } else if (spec.type === 'checkbox') {
    input = h('input', { id, name: spec.name, type: 'checkbox', checked: !!spec.value });
    return h('div', { class: spec.wide ? 'wide' : null }, h('label', { class: 'check', for: id }, input, spec.label));
  } else {
    input = h('input', { id, name: spec.name, type: spec.type || 'text', required: spec.required,
      placeholder: spec.placeholder, autocomplete: spec.autocomplete || 'off', value: spec.value });
  }
  return h('div', { class: spec.wide ? 'wide' : null }, h('label', { for: id }, spec.label), input);
}

/** A form that calls `submit(values)`; its error shows in place, the button waits. */
function form(fields, label, submit, opts = {}) {
  const err = errBox();
  const btn = h('button', { type: 'submit' }, label);
  const f = h('form', { class: opts.plain ? null : 'grid', 'aria-label': opts.name || label },
    fields.map(field), h('div', {}, btn), h('div', { class: 'wide' }, err));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const v = {};
    for (const s of fields) {
      const el = f.elements[s.name];
      if (s.type === 'checkbox') v[s.name] = el.checked;
      else if (s.type === 'password') { if (el.value !== '') v[s.name] = el.value; } // passwords as typed
      else if (s.type === 'select' && s.keepEmpty) { if (el.value !== '') v[s.name] = el.value; }
      else if (el.value.trim() !== '') v[s.name] = el.value.trim();
    }
    btn.disabled = true;
    try { await submit(v, f); } catch (e) { err.textContent = e.message; } finally { btn.disabled = false; }
  });
  return f;
}

/** A table, or an empty state. cols: [[header, row => cell]] */
function table(rows, cols, actions, empty = 'Nothing here yet.') {
  if (!rows || rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': 'table' },
    h('table', {},
      h('thead', {}, h('tr', {}, cols.map(([t]) => h('th', { scope: 'col' }, t)), actions ? h('th', { scope: 'col' }, 'Actions') : null)),
      h('tbody', {}, rows.map((r) => h('tr', {},
        cols.map(([, f]) => h('td', {}, f(r) ?? '—')),
        actions ? h('td', { class: 'actions' }, actions(r)) : null)))));
}

/** Asks before a destructive action; resolves true when confirmed. */
function confirmBox(message, yes = 'Confirm') {
  return new Promise((resolve) => {
    const d = h('dialog', { 'aria-label': 'Confirm' });
    const done = (v) => { d.close(); d.remove(); resolve(v); };
    d.append(h('p', {}, message), h('div', { class: 'buttons' },
      h('button', { class: 'secondary', type: 'button', onclick: () => done(false) }, 'Cancel'),
      h('button', { class: 'danger', type: 'button', onclick: () => done(true) }, yes)));
    d.addEventListener('cancel', () => done(false));
    document.body.append(d);
    d.showModal();
  });
}

/** A button that runs `fn`, showing a failure in `err`. */
function act(label, fn, err, cls = 'small secondary') {
  const b = h('button', { type: 'button', class: cls });
  b.textContent = label;
  b.addEventListener('click', async () => {
    if (err) err.textContent = '';
    b.disabled = true;
    try { await fn(); } catch (e) { (err || pageErr).textContent = e.message; } finally { b.disabled = false; }
  });
  return b;
}

// ---------- MCP over the web session ----------
class Mcp {
  constructor(path) { this.path = path; this.sid = sessionStorage.getItem('mcp:' + path); this.n = 0; }
  headers() {
    const x = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-trex-csrf': S.csrf };
    if (this.sid) { x['mcp-session-id'] = this.sid; x['mcp-protocol-version'] = '2025-11-25'; }
    return x;
  }
  async post(msg) {
    return fetch(this.path, { method: 'POST', headers: this.headers(), body: JSON.stringify(msg), credentials: 'same-origin' });
  }
  async init() {
    this.sid = null;
    const r = await this.post({ jsonrpc: '2.0', id: 0, method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'trex-admin-page', version: S.version } } });
    await this.read(r, 0);
    this.sid = r.headers.get('mcp-session-id');
    sessionStorage.setItem('mcp:' + this.path, this.sid);
    await this.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }
  /** The answer to request `id`, from a JSON or an event-stream body; progress goes to onProgress. */
  async read(r, id, onProgress) {
    if (r.status === 401) { signedOut('Your session ended; sign in again.'); throw new Error('Not signed in'); }
    const ct = r.headers.get('content-type') || '';
    if (!ct.includes('text/event-stream')) {
      const body = await r.json().catch(() => null);
      if (!r.ok && !(body && body.result)) throw new Error((body && body.error && body.error.message) || ('HTTP ' + r.status));
      return body;
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        const data = ev.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (!data) continue;
        const m = JSON.parse(data);
        if (m.method === 'notifications/progress' && onProgress) onProgress(m.params);
        if (m.id === id && (m.result || m.error)) { reader.cancel().catch(() => {}); return m; }
      }
    }
    throw new Error('The server ended the answer early');
  }
  async call(name, args = {}, onProgress) {
    if (!this.sid) await this.init();
    const send = async () => {
      const id = ++this.n;
      const params = { name, arguments: args };
      if (onProgress) params._meta = { progressToken: 'p' + id };
      const r = await this.post({ jsonrpc: '2.0', id, method: 'tools/call', params });
      return { r, id };
    };
    let { r, id } = await send();
    if (r.status === 404) { await this.init(); ({ r, id } = await send()); }
    const m = await this.read(r, id, onProgress);
    if (m.error) throw new Error(m.error.message);
    const res = m.result;
    const text = res.content && res.content[0] && res.content[0].text;
    if (res.isError) throw new Error(text || 'The tool failed');
    return res.structuredContent ?? (text ? JSON.parse(text) : {});
  }
  async end() {
    if (!this.sid) return;
    await fetch(this.path, { method: 'DELETE', headers: this.headers(), credentials: 'same-origin' }).catch(() => {});
    sessionStorage.removeItem('mcp:' + this.path);
    this.sid = null;
  }
}
const admin = new Mcp(BASE + '/mcp');
const migrations = new Mcp('/api/v1/mcp/migrations');
const call = (n, a, p) => admin.call(n, a, p);

// ---------- sign-in ----------
async function api(path, opts = {}) {
  const r = await fetch(BASE + '/api/auth/' + path, { credentials: 'same-origin', ...opts });
  const body = await r.json().catch(() => ({}));
  return { status: r.status, body };
}

function signedOut(message) {
  S.me = null;
  sessionStorage.clear();
  admin.sid = null; migrations.sid = null;
  renderSignIn(message);
}

async function renderSignIn(message) {
  document.title = 'Sign in · trex admin';
  const err = errBox();
  const note = h('p', { class: message ? 'notice' : null, role: 'status' }, message || '');
  const ssoErr = new URLSearchParams(location.search).get('sso_error');
  if (ssoErr) { err.textContent = ssoErr; history.replaceState(null, '', location.pathname + location.hash); }
  const f = form([
    { name: 'email', label: 'Email', type: 'email', required: true, autocomplete: 'username' },
    { name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' },
  ], 'Sign in', async (v) => {
    const { status, body } = await api('login', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: v.email || '', password: v.password || '' }) });
    if (status !== 200) throw new Error(body.error || ('Sign-in failed (' + status + ')'));
    await start();
  }, { plain: true, name: 'Sign in with email' });
  const sso = h('div', { class: 'sso' });
  root.replaceChildren(h('main', { class: 'signin', id: 'main' },
    h('h1', {}, 'trex admin'), note, err, h('div', { class: 'panel' }, f), sso));
  const { body } = await api('providers');
  const list = body.providers || [];
  if (list.length) {
    sso.append(h('h2', {}, 'Or sign in with'),
      ...list.map((p) => h('a', { href: BASE + '/api/auth/sso/' + encodeURIComponent(p.id) + '/start' }, p.displayName)));
  }
}

// ---------- the frame ----------
const PAGES = [
  ['overview', 'Overview', overview], ['users', 'Users', users], ['roles', 'Roles', roles],
  ['keys', 'API keys', keys], ['sessions', 'Sessions', sessions], ['sso', 'SSO providers', ssoPage],
  ['apps', 'OAuth apps', apps], ['databases', 'Databases', databases], ['sql', 'SQL console', sql],
  ['migrations', 'Migrations', migrationsPage], ['audit', 'Audit log', audit], ['nodes', 'Nodes & services', nodes],
  ['plugins', 'Plugins', plugins], ['backups', 'Backups', backups], ['pipelines', 'Pipelines', pipelines],
];
let pageErr = errBox();

function frame() {
  const nav = h('nav', { class: 'side', 'aria-label': 'Pages' }, h('ul', {},
    PAGES.map(([id, t]) => h('li', {}, h('a', { href: '#/' + id, 'data-page': id }, t)))));
  const main = h('main', { id: 'main', tabindex: '-1' });
  root.replaceChildren(
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header', { class: 'top' }, h('span', { class: 'brand' }, 'trex admin'),
      h('span', { class: 'who' }, S.me.name + ' · ' + S.me.email),
      h('button', { type: 'button', class: 'small', onclick: signOut }, 'Sign out')),
    h('div', { class: 'layout' }, nav, main));
}

async function signOut() {
  await admin.end(); await migrations.end();
  const { status, body } = await api('logout', { method: 'POST', headers: { 'x-trex-csrf': S.csrf } });
  if (status !== 200) { pageErr.textContent = 'Sign-out failed: ' + (body.error || status); return; }
  signedOut('Signed out.');
}

async function route() {
  if (!S.me) return;
  const id = (location.hash.match(/^#\/([a-z]+)/) || [])[1] || 'overview';
  const page = PAGES.find((p) => p[0] === id) || PAGES[0];
  document.querySelectorAll('nav.side a').forEach((a) => a.toggleAttribute('aria-current', false));
  const link = document.querySelector(`nav.side a[data-page="${page[0]}"]`);
  if (link) link.setAttribute('aria-current', 'page');
  document.title = page[1] + ' · trex admin';
  const main = document.getElementById('main');
  pageErr = errBox();
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  main.replaceChildren(h('h1', {}, page[1]), pageErr, body);
  try { await page[2](body); } catch (e) { body.replaceChildren(); pageErr.textContent = e.message; }
}

/** Re-renders the current page. */
const refresh = () => route();

async function start() {
  const { status, body } = await api('session');
  if (status !== 200) return renderSignIn();
  S.me = body.user; S.csrf = body.csrfToken; S.rowLimit = body.rowLimit; S.version = body.version;
  if (!body.admin) {
    root.replaceChildren(h('main', { class: 'signin', id: 'main' }, h('h1', {}, 'trex admin'),
      h('p', { class: 'notice', role: 'alert' }, `Signed in as ${S.me.email}, who has no admin role. An admin can give this account the admin role.`),
      h('button', { type: 'button', onclick: signOut }, 'Sign out')));
    return;
  }
  frame();
  route();
}
window.addEventListener('hashchange', route);

// ---------- pages ----------
async function overview(el) {
  const [st, nodesR, sess, au] = await Promise.all([
    call('cluster-get-status'), call('cluster-list-nodes'), call('session-list', { limit: 1000 }), call('audit-list', { limit: 10 })]);
  const self = (nodesR.nodes || []).find((n) => n.self) || {};
  const card = (k, v) => h('div', { class: 'card' }, h('div', { class: 'v' }, String(v)), h('div', { class: 'k' }, k));
  el.replaceChildren(
    h('div', { class: 'cards' },
      card('version', S.version), card('node', self.name || '—'), card('live sessions', sess.sessions.length),
      card('jobs running', st.jobsRunning), card('jobs queued', st.jobsQueued), card('jobs failed', st.jobsFailed),
      card('pipelines running', st.pipelines), card('memory (MiB)', Math.round(st.rssBytes / 1048576))),
    h('h2', {}, 'Recent audit'),
    auditTable(au.entries));
}

function auditTable(entries) {
  return table(entries, [
    ['When', (r) => when(r.createdAt || r.at)], ['Who', (r) => r.userEmail || r.userId || r.via],
    ['Via', (r) => r.via], ['Action', (r) => h('code', {}, r.tool || r.action)],
    ['Outcome', (r) => badge(r.outcome, r.outcome === 'ok' ? 'good' : 'bad')], ['Detail', (r) => r.detail || r.error || ''],
  ], null, 'No audit entries yet.');
}

async function users(el) {
  const err = errBox();
  const search = new URLSearchParams(location.hash.split('?')[1] || '');
  const r = await call('user-list', { search: search.get('q') || undefined, includeDeleted: search.get('deleted') === '1', limit: 100 });
  const rolesR = await call('role-list', { limit: 1000 });
  const filter = form([{ name: 'q', label: 'Search', value: search.get('q') || '' },
    { name: 'deleted', label: 'Include deleted', type: 'checkbox', value: search.get('deleted') === '1' }], 'Filter', async (v) => {
    location.hash = '#/users?' + new URLSearchParams({ q: v.q || '', deleted: v.deleted ? '1' : '0' });
  }, { name: 'Filter users' });
  const create = form([
    { name: 'name', label: 'Name', required: true }, { name: 'email', label: 'Email', type: 'email', required: true },
    { name: 'password', label: 'Password (optional, 8+ characters)', type: 'password', autocomplete: 'new-password' },
    { name: 'role', label: 'Role', type: 'select', options: ['user', 'admin'] }], 'Create user', async (v) => {
    await call('user-create', v); refresh();
  }, { name: 'Create user' });
  el.replaceChildren(h('div', { class: 'panel' }, filter), err, table(r.users, [
    ['Name', (u) => u.name], ['Email', (u) => u.email], ['Role', (u) => badge(u.role, u.role === 'admin' ? 'good' : null)],
    ['Status', (u) => u.deletedAt ? badge('deleted', 'bad') : u.banned ? badge('banned' + (u.banExpires ? ' until ' + when(u.banExpires) : ''), 'bad') : badge('active', 'good')],
    ['Created', (u) => when(u.createdAt)],
  ], (u) => userActions(u, rolesR.roles, err), 'No users match.'), h('h2', {}, 'New user'), h('div', { class: 'panel' }, create));
}

function userActions(u, roleList, err) {
  const out = [];
  if (u.deletedAt) {
    out.push(act('Restore', async () => { await call('user-restore', { userId: u.id }); refresh(); }, err));
    return out;
  }
  out.push(act(u.role === 'admin' ? 'Make user' : 'Make admin', async () => {
    await call('user-update-role', { userId: u.id, role: u.role === 'admin' ? 'user' : 'admin' }); refresh();
  }, err));
  if (u.banned) out.push(act('Lift ban', async () => { await call('user-ban', { userId: u.id, banned: false }); refresh(); }, err));
  else out.push(act('Ban…', () => dialogForm('Ban ' + u.email, [
    { name: 'reason', label: 'Reason' }, { name: 'expiresAt', label: 'Until (date or RFC 3339; empty: for ever)', placeholder: '2027-01-31' }],
  'Ban', async (v) => { await call('user-ban', { userId: u.id, banned: true, ...v }); refresh(); }), err));
  out.push(act('Set password…', () => dialogForm('New password for ' + u.email, [
    { name: 'password', label: 'Password (8+ characters)', type: 'password', required: true, autocomplete: 'new-password' }],
  'Set password', async (v) => { await call('user-set-password', { userId: u.id, password: v.password }); refresh(); }), err));
  if (roleList.length) out.push(act('Roles…', () => dialogForm('Custom roles of ' + u.email, [
    { name: 'roleId', label: 'Role', type: 'select', options: roleList.map((r) => [r.id, r.name]) },
    { name: 'remove', label: 'Remove instead of assign', type: 'checkbox' }],
  'Apply', async (v) => { await call(v.remove ? 'user-role-remove' : 'user-role-assign', { userId: u.id, roleId: v.roleId }); refresh(); }), err));
  out.push(act('Delete', async () => {
    if (await confirmBox(`Delete ${u.email}? Their keys and sessions stop working; the user can be restored.`, 'Delete')) {
      await call('user-delete', { userId: u.id }); refresh();
    }
  }, err, 'small danger'));
  return out;
}

/** A form in a modal dialog; resolves when it is submitted successfully or cancelled. */
function dialogForm(title, fields, label, submit) {
  return new Promise((resolve) => {
    const d = h('dialog', { 'aria-label': title });
    const close = () => { d.close(); d.remove(); resolve(); };
    const f = form(fields, label, async (v) => { await submit(v); close(); }, { plain: true, name: title });
    d.append(h('h2', {}, title), f, h('div', { class: 'buttons' }, h('button', { type: 'button', class: 'secondary', onclick: close }, 'Cancel')));
    d.addEventListener('cancel', close);
    document.body.append(d);
    d.showModal();
  });
}

async function roles(el) {
  const err = errBox();
  const r = await call('role-list', { limit: 1000 });
  el.replaceChildren(err, table(r.roles, [['Name', (x) => x.name], ['Description', (x) => x.description || ''], ['Created', (x) => when(x.createdAt)]],
    (x) => [act('Edit…', () => dialogForm('Edit role ' + x.name, [
      { name: 'name', label: 'Name', value: x.name }, { name: 'description', label: 'Description', value: x.description || '' }],
    'Save', async (v) => { await call('role-update', { roleId: x.id, ...v }); refresh(); }), err),
    act('Delete', async () => { if (await confirmBox(`Delete role ${x.name}?`, 'Delete')) { await call('role-delete', { roleId: x.id }); refresh(); } }, err, 'small danger')],
    'No roles yet.'),
  h('h2', {}, 'New role'), h('div', { class: 'panel' }, form([{ name: 'name', label: 'Name', required: true }, { name: 'description', label: 'Description' }],
    'Create role', async (v) => { await call('role-create', v); refresh(); }, { name: 'Create role' })));
}

function clientSnippets(key) {
  const url = location.origin + BASE + '/mcp';
  const cfg = { mcpServers: { trex: { type: 'http', url, headers: { Authorization: 'Bearer ' + key } } } };
  return [
    ['Claude Code / .mcp.json', JSON.stringify(cfg, null, 2)],
    ['Claude Desktop (mcp-remote)', JSON.stringify({ mcpServers: { trex: { command: 'npx', args: ['mcp-remote', url, '--header', 'Authorization:${AUTH}'], env: { AUTH: 'Bearer ' + key } } } }, null, 2)],
    ['curl', `curl -s ${url} -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'`],
  ];
}

function copyButton(text) {
  const b = h('button', { type: 'button', class: 'small secondary' }, 'Copy');
  b.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; } catch { b.textContent = 'Select and copy by hand'; }
  });
  return b;
}

async function keys(el) {
  const err = errBox();
  const [r, us] = await Promise.all([call('api-key-list', { limit: 1000 }), call('user-list', { limit: 1000 })]);
  const admins = us.users.filter((u) => u.role === 'admin' && !u.deletedAt);
  const shown = h('div', {});
  const create = form([
    { name: 'name', label: 'Name', required: true },
    { name: 'userId', label: 'Held by (an admin)', type: 'select', options: admins.map((u) => [u.id, u.email]), value: S.me.id },
    { name: 'expiresAt', label: 'Expires (RFC 3339; empty: never)', placeholder: '2027-01-01T00:00:00Z' },
    { name: 'tools', label: 'Allowed tools (globs, comma separated; empty: all)', placeholder: 'trexdb-*, database-list' },
    { name: 'readOnly', label: 'Read-only tools only', type: 'checkbox' }], 'Create key', async (v) => {
    const scopes = {};
    if (v.readOnly) scopes.readOnly = true;
    if (v.tools) scopes.tools = v.tools.split(',').map((s) => s.trim()).filter(Boolean);
    const k = await call('api-key-create', { name: v.name, userId: v.userId, expiresAt: v.expiresAt,
      scopes: Object.keys(scopes).length ? scopes : undefined });
    shown.replaceChildren(h('div', { class: 'panel', role: 'status' },
      h('h2', {}, 'New key: ' + k.name),
      h('p', { class: 'notice' }, 'This key is shown once. Store it now; only its hash is kept.'),
      h('div', { class: 'toolbar' }, h('code', { class: 'secret', 'data-key': '' }, k.key), copyButton(k.key)),
      clientSnippets(k.key).map(([t, s]) => [h('h2', {}, t), h('div', { class: 'toolbar' }, h('pre', { class: 'secret' }, s), copyButton(s))]),
      h('button', { type: 'button', class: 'secondary', onclick: refresh }, 'Done')));
    shown.scrollIntoView();
  }, { name: 'Create API key' });
  el.replaceChildren(shown, err, table(r.keys, [
    ['Name', (k) => k.name], ['Prefix', (k) => h('code', {}, k.keyPrefix)], ['Holder', (k) => k.userEmail],
    ['Scopes', (k) => (k.scopes ? h('code', {}, JSON.stringify(k.scopes)) : 'all')], ['Last used', (k) => when(k.lastUsedAt)],
    ['Expires', (k) => when(k.expiresAt)], ['Status', (k) => (k.revokedAt ? badge('revoked', 'bad') : badge('active', 'good'))],
  ], (k) => (k.revokedAt ? [] : [act('Revoke', async () => {
    if (await confirmBox(`Revoke key ${k.name} (${k.keyPrefix}…)? Clients using it are refused from their next request.`, 'Revoke')) {
      await call('api-key-revoke', { keyId: k.id }); refresh();
    }
  }, err, 'small danger')]), 'No API keys yet.'), h('h2', {}, 'New key'), h('div', { class: 'panel' }, create));
}

async function sessions(el) {
  const err = errBox();
  const r = await call('session-list', { limit: 1000 });
  el.replaceChildren(err, table(r.sessions, [
    ['Kind', (s) => badge(s.kind)], ['User', (s) => s.userEmail], ['Client', (s) => s.userAgent || ''], ['Address', (s) => s.ipAddress || ''],
    ['Last seen', (s) => when(s.lastSeenAt)], ['Expires', (s) => when(s.expiresAt)],
  ], (s) => [act('Revoke', async () => {
    if (await confirmBox('Revoke this session? Its client must sign in or initialize again.', 'Revoke')) {
      await call('session-revoke', { sessionId: s.id }); refresh();
    }
  }, err, 'small danger')], 'No live sessions.'));
}

async function ssoPage(el) {
  const err = errBox();
  const r = await call('sso-list', { limit: 1000 });
  const save = form([
    { name: 'id', label: 'Id (github, or e.g. google, okta)', required: true }, { name: 'displayName', label: 'Display name', required: true },
    { name: 'clientId', label: 'Client id', required: true }, { name: 'clientSecret', label: 'Client secret (empty keeps the stored one)', type: 'password' },
    { name: 'issuer', label: 'Issuer URL (OpenID Connect; not for github)', placeholder: 'https://accounts.google.com' },
    { name: 'enabled', label: 'Enabled', type: 'select', keepEmpty: true, options: [['', 'keep as it is (new: disabled)'], ['true', 'enabled'], ['false', 'disabled']] }],
  'Save provider', async (v) => {
    if (v.enabled !== undefined) v.enabled = v.enabled === 'true';
    await call('sso-save', v); refresh();
  }, { name: 'Save SSO provider' });
  el.replaceChildren(
    h('p', {}, 'Redirect URL to register with a provider: ', h('code', {}, location.origin + BASE + '/api/auth/sso/<id>/callback')),
    err, table(r.providers, [['Id', (p) => h('code', {}, p.id)], ['Name', (p) => p.displayName], ['Client id', (p) => p.clientId],
      ['Issuer', (p) => p.issuer || (p.id === 'github' ? 'GitHub OAuth' : '—')], ['Secret', (p) => (p.hasClientSecret ? 'set' : 'none')],
      ['Enabled', (p) => (p.enabled ? badge('enabled', 'good') : badge('disabled'))]],
    (p) => [act(p.enabled ? 'Disable' : 'Enable', async () => {
      await call('sso-save', { id: p.id, displayName: p.displayName, clientId: p.clientId, enabled: !p.enabled }); refresh();
    }, err), act('Delete', async () => { if (await confirmBox(`Delete SSO provider ${p.id}?`, 'Delete')) { await call('sso-delete', { id: p.id }); refresh(); } }, err, 'small danger')],
    'No SSO providers yet.'), h('h2', {}, 'Add or change a provider'), h('div', { class: 'panel' }, save));
}

async function apps(el) {
  const err = errBox();
  const r = await call('app-list', { limit: 1000 });
  el.replaceChildren(err, table(r.apps, [['Name', (a) => a.name], ['Client id', (a) => h('code', {}, a.clientId || a.id)],
    ['Redirect URLs', (a) => (a.redirectURLs || a.redirectUrls || []).join(', ')], ['Status', (a) => (a.disabled ? badge('disabled', 'bad') : badge('active', 'good'))]],
  (a) => [act('Delete', async () => { if (await confirmBox(`Delete app ${a.name}?`, 'Delete')) { await call('app-delete', { appId: a.id }); refresh(); } }, err, 'small danger')],
  'No OAuth apps yet.'), h('h2', {}, 'New app'), h('div', { class: 'panel' }, form([
    { name: 'name', label: 'Name', required: true }, { name: 'redirectURLs', label: 'Redirect URLs (comma separated)', required: true }],
  'Create app', async (v) => {
    const a = await call('app-create', { name: v.name, redirectURLs: v.redirectURLs.split(',').map((s) => s.trim()) });
    const secret = a.clientSecret || (a.app && a.app.clientSecret);
    if (secret) await confirmBox('Client secret (shown once): ' + secret, 'Done');
    refresh();
  }, { name: 'Create OAuth app' })));
}

async function databases(el) {
  const err = errBox();
  const r = await call('database-list', { limit: 1000 });
  const out = h('div', {});
  el.replaceChildren(err, out, table(r.databases, [
    ['Id', (d) => h('code', {}, d.id)], ['Dialect', (d) => d.dialect], ['Where', (d) => (d.host ? `${d.host}:${d.port}/${d.databaseName}` : d.databaseName)],
    ['Enabled', (d) => (d.enabled ? badge('enabled', 'good') : badge('disabled'))], ['Description', (d) => d.description || '']],
  (d) => [
    act('Test connection', async () => {
      const t = await call('database-test-connection', { databaseId: d.id });
      out.replaceChildren(h('p', { class: t.ok === false ? 'error' : 'notice', role: 'status' }, `${d.id}: ${t.message || JSON.stringify(t)}`));
    }, err),
    act('Credentials…', () => credentials(d, out), err),
    act('Delete', async () => { if (await confirmBox(`Delete database ${d.id}? Its credentials go with it.`, 'Delete')) { await call('database-delete', { id: d.id }); refresh(); } }, err, 'small danger')],
  'No databases registered yet.'),
  h('h2', {}, 'Register a database'), h('div', { class: 'panel' }, form([
    { name: 'id', label: 'Id', required: true }, { name: 'dialect', label: 'Dialect', type: 'select', options: ['postgres', 'sqlite'] },
    { name: 'host', label: 'Host (postgres)', placeholder: '127.0.0.1' }, { name: 'port', label: 'Port (postgres)', placeholder: '5432' },
    { name: 'databaseName', label: 'Database name (or SQLite file)', required: true }, { name: 'description', label: 'Description' }],
  'Register', async (v) => { if (v.port) v.port = Number(v.port); await call('database-create', v); refresh(); }, { name: 'Register database' })));
}

async function credentials(d, out) {
  const err = errBox();
  const r = await call('database-credential-list', { databaseId: d.id });
  const list = r.credentials || [];
  out.replaceChildren(h('div', { class: 'panel' }, h('h2', {}, 'Credentials of ' + d.id), err,
    table(list, [['Id', (c) => h('code', {}, c.id)], ['User name', (c) => c.username], ['Scope', (c) => [c.userScope, c.serviceScope].filter(Boolean).join(', ')]],
      (c) => [act('Delete', async () => { if (await confirmBox('Delete this credential?', 'Delete')) { await call('database-credential-delete', { credentialId: c.id }); credentials(d, out); } }, err, 'small danger')],
      'No credentials yet.'),
    form([{ name: 'username', label: 'User name', required: true }, { name: 'password', label: 'Password', type: 'password', required: true }],
      'Save credential', async (v) => { await call('database-credential-save', { databaseId: d.id, ...v }); credentials(d, out); }, { name: 'Save credential' })));
}

async function sql(el) {
  const res = h('div', {});
  const f = form([
    { name: 'sql', label: 'SQL (trexdb)', type: 'textarea', required: true, wide: true, placeholder: 'SELECT name FROM sqlite_schema' },
    { name: 'allowWrite', label: 'Allow writes', type: 'checkbox' }], 'Run', async (v) => {
    const r = await call('trexdb-execute-sql', { sql: v.sql, allowWrite: !!v.allowWrite });
    res.replaceChildren(h('p', { role: 'status' }, `Statement class: `, badge(r.statementClass), ` · ${r.rowCount} row(s)${r.truncated ? ' (truncated at the row cap)' : ''} · ${r.elapsedMs} ms`),
      table((r.rows || []).map((row) => ({ row })), (r.columns || []).map((c, i) => [c, (x) => (x.row[i] === null ? 'NULL' : typeof x.row[i] === 'object' ? JSON.stringify(x.row[i]) : String(x.row[i]))]), null, 'No rows.'));
  }, { name: 'SQL console' });
  el.replaceChildren(h('p', {}, `Read-only unless "Allow writes" is ticked; at most ${S.rowLimit} rows come back (engine.row_limit).`), h('div', { class: 'panel' }, f), res);
}

async function migrationsPage(el) {
  const err = errBox();
  const r = await migrations.call('list_migrations', { limit: 1000 });
  const report = h('div', { id: 'run-report' });
  const list = r.migrations || [];
  el.replaceChildren(err, table(list, [['Id', (m) => h('code', {}, m.id)], ['Version', (m) => m.version], ['Status', (m) => badge(m.status)],
    ['Strategy', (m) => (m.strategy && m.strategy.type) || m.strategy || ''], ['Targets', (m) => (m.targets || []).join(', ')]],
  (m) => [act('Test', () => runMigration(m.id, 'test', report), err), act('Migrate', async () => {
    if (await confirmBox(`Migrate ${m.id} for real on its targets?`, 'Migrate')) await runMigration(m.id, 'migrate', report);
  }, err, 'small danger')], 'No migrations defined yet.'), report,
  h('h2', {}, 'Define a migration (JSON arguments of define_migration)'), h('div', { class: 'panel' }, form([
    { name: 'json', label: 'Definition', type: 'textarea', wide: true, required: true, rows: 8,
      placeholder: '{"id": "add-notes", "interlays": [...], "data": {"type": "sql", "up": "..."}, "strategy": {"type": "snapshot"}, "failure_handling": {"type": "rollback"}}' }],
  'Define', async (v) => {
    let args; try { args = JSON.parse(v.json); } catch (e) { throw new Error('Not JSON: ' + e.message); }
    await migrations.call('define_migration', args); refresh();
  }, { name: 'Define migration' })));
}

async function runMigration(id, mode, out) {
  out.replaceChildren(h('p', { role: 'status' }, `${mode === 'test' ? 'Testing' : 'Migrating'} ${id}…`));
  const started = await migrations.call('run_migration', { migration_id: id, mode, wait: false });
  let run = started;
  for (let i = 0; i < 1200; i++) {
    run = await migrations.call('get_migration_run', { run_id: started.runId });
    out.replaceChildren(h('p', { role: 'status' }, `Run ${run.runId}: `, badge(run.state), ' ', (run.targets || []).map((t) => `${t.database}: ${t.state}`).join(' · ')));
    if (!['pending', 'running', 'rolling_back'].includes(run.state)) break;
    await new Promise((r) => setTimeout(r, 300));
  }
  out.replaceChildren(h('div', { class: 'panel', role: 'status' }, h('h2', {}, `Run ${run.runId} (${run.mode}): ${run.state}`),
    run.error ? h('p', { class: 'error' }, run.error) : null,
    (run.targets || []).map((t) => h('div', {}, h('h2', {}, `Target ${t.database}: ${t.state}`),
      t.error ? h('p', { class: 'error' }, t.error) : null,
      t.report ? [h('p', {}, `${t.report.statements} statement(s), ${t.report.rowsAffected} row(s), ${t.report.durationMs} ms`),
        h('h2', {}, 'Schema diff'), h('pre', { class: 'report' }, JSON.stringify(t.report.diff, null, 2))] : null))));
}

async function audit(el) {
  const q = new URLSearchParams(location.hash.split('?')[1] || '');
  const args = { limit: 50 };
  for (const k of ['userId', 'tool', 'via', 'since', 'cursor']) if (q.get(k)) args[k] = q.get(k);
  const r = await call('audit-list', args);
  const filter = form([
    { name: 'userId', label: 'User id', value: q.get('userId') || '' }, { name: 'tool', label: 'Tool', value: q.get('tool') || '' },
    { name: 'via', label: 'Via', type: 'select', options: [['', 'any'], 'mcp', 'web', 'cli'], value: q.get('via') || '' },
    { name: 'since', label: 'Since (RFC 3339)', value: q.get('since') || '', placeholder: '2026-12-01T00:00:00Z' }], 'Filter', async (v) => {
    location.hash = '#/audit?' + new URLSearchParams(v);
  }, { name: 'Filter audit log' });
  const more = r.nextCursor ? h('a', { href: '#/audit?' + new URLSearchParams({ ...Object.fromEntries(q), cursor: r.nextCursor }) }, 'Older entries →') : null;
  el.replaceChildren(h('div', { class: 'panel' }, filter), auditTable(r.entries), h('p', {}, more));
}

async function nodes(el) {
  const err = errBox();
  const [n, s] = await Promise.all([call('cluster-list-nodes'), call('cluster-list-services')]);
  el.replaceChildren(err, table(n.nodes, [['Name', (x) => x.name + (x.self ? ' (this one)' : '')], ['Address', (x) => x.listenAddress], ['Version', (x) => x.version],
    ['State', (x) => badge(x.state, x.state === 'alive' ? 'good' : 'bad')], ['Last seen', (x) => when(x.lastSeen)]], null, 'No nodes.'),
  h('h2', {}, 'Services'), table(s.services, [['Service', (x) => h('code', {}, x.extension)], ['Node', (x) => x.node], ['Status', (x) => badge(x.status, x.status === 'running' ? 'good' : null)],
    ['Uptime (s)', (x) => x.uptimeSecs ?? '—']],
  (x) => (x.controllable ? [x.status === 'running'
    ? act('Stop', async () => { if (await confirmBox(`Stop ${x.extension}?`, 'Stop')) { await call('cluster-stop-service', { extension: x.extension }); refresh(); } }, err, 'small danger')
    : act('Start', async () => { await call('cluster-start-service', { extension: x.extension }); refresh(); }, err)] : []), 'No services.'));
}

async function plugins(el) {
  const err = errBox();
  const r = await call('plugin-list', { limit: 1000 });
  el.replaceChildren(err, table(r.plugins, [['Name', (p) => h('code', {}, p.name)], ['Version', (p) => p.version], ['Description', (p) => p.description || '']],
    (p) => [act('Uninstall', async () => { if (await confirmBox(`Uninstall ${p.name}?`, 'Uninstall')) { await call('plugin-uninstall', { packageName: p.name }); refresh(); } }, err, 'small danger')],
    'No plugins installed.'), h('h2', {}, 'Install'), h('div', { class: 'panel' }, form([
    { name: 'packageSpec', label: 'Package (a .tgz path on the server, or a directory)', required: true }], 'Install', async (v) => {
    await call('plugin-install', v); refresh();
  }, { name: 'Install plugin' })));
}

async function backups(el) {
  const r = await call('backup-list');
  const msg = h('div', {});
  el.replaceChildren(msg, h('div', { class: 'toolbar' }, act('Back up now', async () => {
    const b = await call('backup-create', {}, (p) => msg.replaceChildren(h('p', { role: 'status' }, `Backing up… ${p.progress}${p.total ? ' / ' + p.total : ''}`)));
    msg.replaceChildren(h('p', { class: 'notice', role: 'status' }, 'Backup written: ' + (b.path || b.file || JSON.stringify(b))));
    refresh();
  }, msg, '')), table(r.backups, [['File', (b) => h('code', {}, b.file || b.name || b.path)], ['Size', (b) => (b.bytes ?? b.size ?? '') + ''], ['Made', (b) => when(b.createdAt)]], null, 'No backups yet.'));
}

async function pipelines(el) {
  const err = errBox();
  const r = await call('etl-list-pipelines');
  el.replaceChildren(err, table(r.pipelines, [['Name', (p) => p.name], ['State', (p) => badge(p.state, p.state === 'error' ? 'bad' : p.state === 'streaming' ? 'good' : null)],
    ['Mode', (p) => p.mode], ['Connection', (p) => h('code', {}, p.connection)], ['Rows', (p) => p.rowsReplicated], ['Lag', (p) => (p.lagMs === null ? '—' : p.lagMs + ' ms')],
    ['Error', (p) => p.error || '']],
  (p) => [p.state === 'stopped' || p.state === 'error'
    ? act('Start', async () => { await call('etl-start-pipeline', { name: p.name }); refresh(); }, err)
    : act('Stop', async () => { await call('etl-stop-pipeline', { name: p.name }); refresh(); }, err),
  act('Delete', async () => { if (await confirmBox(`Delete pipeline ${p.name}? Its replication slot goes; the replica tables stay.`, 'Delete')) { await call('etl-delete-pipeline', { name: p.name }); refresh(); } }, err, 'small danger')],
  'No pipelines. Start one with the etl-start-pipeline tool.'));
}

start();

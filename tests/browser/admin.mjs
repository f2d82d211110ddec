// The admin page in a real browser: Debian's chromium driven by playwright-core (never a
// browser download), a real OpenID provider (oidc-provider) on 127.0.0.1, axe-core injected
// into every page, the official Python SDK using a key made on the page. Run by
// tests/it/admin_page.rs against a live trex, with:
//   TREX_BASE   http://127.0.0.1:PORT          TREX_KEY  an admin API key
//   PYTHON      the MCP kit's Python (mcp SDK) SDK_PING  tests/python/sdk_ping.py
//   SHOTS       where screenshots go            ADMIN_EMAIL / ADMIN_PASSWORD  a password admin
//   SSO_EMAIL   an admin that signs in through the OpenID provider
// Prints one line per check and exits non-zero on the first failure.

import { createServer } from 'node:http';
import { readFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import Provider from 'oidc-provider';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const BASE = env('TREX_BASE');
const KEY = env('TREX_KEY');
const SHOTS = env('SHOTS');
const ADMIN = env('ADMIN_EMAIL');
const ADMIN_PW = env('ADMIN_PASSWORD');
const SSO_ADMIN = env('SSO_EMAIL');
mkdirSync(SHOTS, { recursive: true });
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const step = (m) => console.log('ok -', m);

// ---------- MCP with the API key (set-up and checks from outside the page) ----------
async function mcp(path, name, args) {
  const h = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await fetch(BASE + path, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'browser-test', version: '1' } } }) });
  const sid = init.headers.get('mcp-session-id');
  await init.text();
  const r = await fetch(BASE + path, { method: 'POST', headers: { ...h, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: args } }) });
  const text = await r.text();
  const line = text.startsWith('{') ? text : text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).pop();
  const m = JSON.parse(line);
  if (m.error || m.result.isError) throw new Error(`${name}: ${JSON.stringify(m.error || m.result.content)}`);
  return m.result.structuredContent;
}
const tool = (name, args = {}) => mcp('/trex/mcp', name, args);

// ---------- a real OpenID provider ----------
const idpPort = await freePort();
const ISSUER = `http://127.0.0.1:${idpPort}`;
const provider = new Provider(ISSUER, {
  clients: [{
    client_id: 'trex-admin', client_secret: 'idp-secret-for-trex', application_type: 'web',
    redirect_uris: [`${BASE}/trex/api/auth/sso/local/callback`], grant_types: ['authorization_code'], response_types: ['code'],
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // every login name is an account whose email is that name, verified
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub, email: sub, email_verified: true, name: sub }) }),
  cookies: { keys: ['browser-test-cookie-key'] },
  pkce: { required: () => true },
});
provider.on('server_error', (ctx, e) => console.error('idp error', e));
const idp = provider.listen(idpPort, '127.0.0.1');
await tool('sso-save', { id: 'local', displayName: 'Local IdP', clientId: 'trex-admin', clientSecret: 'idp-secret-for-trex', issuer: ISSUER, enabled: true });
step(`OpenID provider at ${ISSUER}, saved as SSO provider "local"`);

// ---------- another site, for the cross-site POST ----------
const evilPort = await freePort();
const EVIL = `http://127.0.0.1:${evilPort}`;
const evil = createServer((req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end(`<!doctype html><html lang="en"><title>evil</title><body>
    <form id="f" method="POST" action="${BASE}/trex/mcp" enctype="text/plain">
    <input name='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"role-create","arguments":{"name":"evil"}},"x":"' value='"}'>
    </form><script>document.getElementById('f').submit()</script></body></html>`);
}).listen(evilPort, '127.0.0.1');

// ---------- the browser ----------
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
page.on('pageerror', (e) => { console.error('page error:', e.message); process.exitCode = 1; });
page.on('console', (m) => { if (m.type() === 'error' && !/401|403/.test(m.text())) console.error('console:', m.text(), JSON.stringify(m.location())); });
page.on('response', (r) => { if (r.status() === 404) console.error('404:', r.request().method(), r.url()); });
const ADMIN_URL = `${BASE}/trex/admin/`;

async function axe(name) {
  await page.evaluate(AXE);
  const r = await page.evaluate(async () => {
    const res = await window.axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${name}: axe found serious or critical violations: ${JSON.stringify(bad)}`);
}

async function shots(name) {
  await page.screenshot({ path: `${SHOTS}/${name}-desktop.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(50);
  await page.screenshot({ path: `${SHOTS}/${name}-phone.png`, fullPage: true });
  await axe(`${name} (phone width)`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

try {
  // first load: size and time to the sign-in form
  const t0 = Date.now();
  const resp = await page.goto(ADMIN_URL);
  await page.getByLabel('Email', { exact: true }).waitFor();
  const ms = Date.now() - t0;
  const csp = resp.headers()['content-security-policy'];
  assert.ok(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'"), csp);
  assert.equal(resp.headers()['x-frame-options'], 'DENY');
  const bytes = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, nav.transferSize);
  });
  assert.ok(bytes < 200 * 1024, `first load transferred ${bytes} bytes`);
  console.log(`figure - first load: ${bytes} bytes transferred, sign-in form ready ${ms} ms after navigation`);
  await axe('sign-in');
  await shots('signin');

  // password sign-in with the keyboard alone
  await page.getByLabel('Email', { exact: true }).focus();
  await page.keyboard.type(ADMIN);
  await page.keyboard.press('Tab');
  await page.keyboard.type(ADMIN_PW);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  step('signed in with email and password, by keyboard');
  // keyboard navigation to a page
  await page.getByRole('link', { name: 'Users' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Users' }).waitFor();
  step('moved to the users page by keyboard');

  // every page renders, passes axe, and is photographed at both widths
  for (const [id, title] of [['overview', 'Overview'], ['users', 'Users'], ['roles', 'Roles'], ['keys', 'API keys'], ['sessions', 'Sessions'],
    ['sso', 'SSO providers'], ['apps', 'OAuth apps'], ['databases', 'Databases'], ['sql', 'SQL console'], ['migrations', 'Migrations'],
    ['audit', 'Audit log'], ['nodes', 'Nodes & services'], ['plugins', 'Plugins'], ['backups', 'Backups'], ['pipelines', 'Pipelines']]) {
    await page.goto(`${ADMIN_URL}#/${id}`);
    await page.getByRole('heading', { name: title, exact: true }).waitFor();
    await page.waitForSelector('main .loading', { state: 'detached' });
    const err = await page.locator('main > .error').first().textContent();
    assert.equal(err, '', `${id}: the page shows an error: ${err}`);
    await axe(id);
    await shots(id);
  }
  step('15 pages render with no error and no serious axe violation, at desktop and phone width');

  // a key: created, shown once, works with the Python SDK, revoked on the page, refused
  await page.goto(`${ADMIN_URL}#/keys`);
  await page.getByLabel('Name', { exact: true }).fill('browser-key');
  await page.getByRole('button', { name: 'Create key' }).click();
  const key = (await page.locator('code[data-key]').textContent()).trim();
  assert.match(key, /^trex_[0-9a-f]{48}$/);
  await page.getByText('This key is shown once').waitFor();
  await page.getByText('"Authorization": "Bearer ' + key).first().waitFor();
  step('a key was made and shown once, with client snippets');
  const ping = (k) => {
    try { return execFileSync(env('PYTHON'), [env('SDK_PING'), `${BASE}/trex/mcp`, k], { encoding: 'utf8' }); } catch (e) { return 'FAILED ' + (e.stdout || ''); }
  };
  const okOut = ping(key);
  assert.match(okOut, /^OK mcp/, okOut);
  step('the Python SDK works with it: ' + okOut.trim());
  await page.getByRole('button', { name: 'Done' }).click();
  await page.locator('tr', { hasText: 'browser-key' }).getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.locator('tr', { hasText: 'browser-key' }).getByText('revoked').waitFor();
  const refused = ping(key);
  assert.match(refused, /^FAILED/, refused);
  step('revoked on the page; the next SDK request is refused');

  // a user is made and banned on the page
  await page.goto(`${ADMIN_URL}#/users`);
  const create = page.getByRole('form', { name: 'Create user' });
  await create.getByLabel('Name', { exact: true }).fill('Mallory');
  await create.getByLabel('Email', { exact: true }).fill('mallory@example.com');
  await create.getByRole('button', { name: 'Create user' }).click();
  const row = page.locator('tr', { hasText: 'mallory@example.com' });
  await row.getByRole('button', { name: 'Ban…' }).click();
  await page.getByRole('dialog').getByLabel('Reason').fill('spam');
  await page.getByRole('dialog').getByRole('button', { name: 'Ban' }).click();
  await row.getByText('banned').waitFor();
  const u = (await tool('user-list', { search: 'mallory' })).users[0];
  assert.equal(u.banned, true); assert.equal(u.banReason, 'spam');
  step('a user was created and banned with a reason');

  // a migration is defined and tested; its report shows the schema diff
  await page.goto(`${ADMIN_URL}#/migrations`);
  await page.getByLabel('Definition').fill(JSON.stringify({ id: 'page-nick', interlays: [{ endpoint: 'app' }],
    data: { type: 'sql', up: 'ALTER TABLE users ADD COLUMN nick TEXT' } }));
  await page.getByRole('button', { name: 'Define' }).click();
  await page.locator('tr', { hasText: 'page-nick' }).getByRole('button', { name: 'Test' }).click();
  await page.getByRole('heading', { name: /^Run run_.*\(test\): completed$/ }).waitFor({ timeout: 30000 });
  await page.getByRole('heading', { name: 'Schema diff' }).waitFor();
  assert.match(await page.locator('pre.report').first().textContent(), /nick/);
  await shots('migration-report');
  step('a migration test ran from the page and its report shows the schema diff');

  // a cross-site POST with the session cookie is refused (Origin + per-session token)
  await page.goto(EVIL);
  await page.waitForLoadState('networkidle');
  const rolesAfter = (await tool('role-list', { search: 'evil' })).roles;
  assert.deepEqual(rolesAfter, [], 'the cross-site form created a role');
  const cookies = await context.cookies(BASE);
  const session = cookies.find((c) => c.name === 'trex_session');
  const forged = await fetch(`${BASE}/trex/mcp`, { method: 'POST', headers: { cookie: `trex_session=${session.value}`, origin: EVIL,
    'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) });
  assert.equal(forged.status, 403);
  const noToken = await fetch(`${BASE}/trex/mcp`, { method: 'POST', headers: { cookie: `trex_session=${session.value}`, origin: BASE,
    'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) });
  assert.equal(noToken.status, 403, 'a same-origin call without the CSRF token');
  step('cross-site POSTs are refused (403 from another origin; 403 without the session token)');

  // sign out, then SSO through the OpenID provider
  await page.goto(ADMIN_URL);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Email', { exact: true }).waitFor();
  async function ssoAs(email) {
    await page.getByRole('link', { name: 'Local IdP' }).click();
    await page.locator('input[name="login"]').fill(email);
    await page.locator('input[name="password"]').fill('anything');
    await page.locator('button[type="submit"]').click();
    // the provider's consent screen
    await page.waitForURL((u) => u.toString().startsWith(BASE) || /interaction/.test(u.toString()));
    if (!page.url().startsWith(BASE)) await page.locator('button[type="submit"]').click();
    await page.waitForURL((u) => u.toString().startsWith(ADMIN_URL));
  }
  await ssoAs(SSO_ADMIN);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  assert.match(await page.locator('header .who').textContent(), new RegExp(SSO_ADMIN.replace('.', '\\.')));
  step(`signed in through SSO as ${SSO_ADMIN}`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Email', { exact: true }).waitFor();
  // the provider remembers who signed in there (its cookie): forget it, as another person would
  await context.clearCookies();
  await ssoAs('stranger@example.com');
  await page.getByText('No account has the email stranger@example.com').waitFor();
  step('an unknown email is refused by SSO sign-in');
  // a banned admin is refused; a demoted one signs in but gets no admin page
  const ssoUser = (await tool('user-list', { search: SSO_ADMIN })).users[0];
  await tool('user-ban', { userId: ssoUser.id, banned: true, reason: 'test' });
  await context.clearCookies();
  await ssoAs(SSO_ADMIN);
  await page.getByText('This user is banned').waitFor();
  await tool('user-ban', { userId: ssoUser.id, banned: false });
  await tool('user-update-role', { userId: ssoUser.id, role: 'user' });
  await context.clearCookies();
  await ssoAs(SSO_ADMIN);
  await page.getByText('who has no admin role').waitFor();
  assert.equal(await page.getByRole('link', { name: 'Users' }).count(), 0);
  step('a banned user is refused by SSO sign-in; a demoted one gets no admin page');
  const logins = (await tool('audit-list', { via: 'web', limit: 50 })).entries.filter((e) => (e.tool || e.action) === 'login');
  assert.ok(logins.some((e) => e.outcome === 'ok' && JSON.stringify(e).includes('local')), JSON.stringify(logins));
  assert.ok(logins.some((e) => e.outcome !== 'ok' && JSON.stringify(e).includes('stranger@example.com')), JSON.stringify(logins));
  step('sign-ins and the refusal are in the audit log');
  console.log('ALL OK');
} catch (e) {
  await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
  console.log('page at failure:', page.url(), (await page.locator('body').innerText().catch(() => '')).slice(0, 500));
  throw e;
} finally {
  await browser.close();
  idp.close();
  evil.close();
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// The dashboard, end to end, in a real headless browser (Debian's chromium, driven by
// playwright-core; nothing downloads a browser) against a running `signalbox` binary.
// Started by crates/server/tests/it/ui.rs:
//
//   node dashboard.mjs BASE_URL ADMIN_PASSWORD UP_URL DOWN_URL SCREENSHOT_DIR
//
// UP_URL is a fake OpenAI upstream that answers only the key "sk-fake-house"; DOWN_URL one that
// always answers 503. Prints "all checks passed" at the end; any failure exits non-zero.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, adminPassword, upUrl, downUrl, shotDir] = process.argv.slice(2);
assert.ok(base && adminPassword && upUrl && downUrl && shotDir, 'usage: dashboard.mjs BASE ADMIN_PASSWORD UP_URL DOWN_URL SHOT_DIR');
mkdirSync(shotDir, { recursive: true });
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const here = path.dirname(new URL(import.meta.url).pathname);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const WRITE_WORDS = /\b(create|new|connect|edit|delete|remove|revoke|rotate|save|roll back|disable|enable|test connection|add|store|preview)\b/i;

const log = (m) => console.log(`- ${m}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The OpenAI Python SDK, calling the gateway: one result per call. */
function sdk(key, model, count = 1, prompt = 'hello') {
  const out = execFileSync('python3', [path.join(here, 'call.py'), base, key, model, String(count), prompt], { encoding: 'utf8', timeout: 60000 });
  return JSON.parse(out.trim().split('\n').pop());
}

async function eventually(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(150);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const cspViolations = [];
const pageErrors = [];
const VIEWPORT = { width: 1280, height: 2400 };
const recent = [];

async function newPage() {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
  });
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.error(`page error: ${e.message}`); });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.error(`console ${m.type()}: ${m.text()}`); });
  page.on('requestfinished', async (r) => { const resp = await r.response(); recent.push(`${r.method()} ${r.url()} ${resp ? resp.status() : ''}`); });
  page.on('requestfailed', (r) => recent.push(`${r.method()} ${r.url()} FAILED ${r.failure()?.errorText}`));
  page.setDefaultTimeout(15000);
  return page;
}

async function rendered(page) {
  return Number(await page.evaluate(() => document.body.dataset.rendered || 0));
}

/** Go to a dashboard route and wait until its page is drawn. */
async function go(page, hash) {
  const before = await rendered(page);
  await page.evaluate((h) => {
    if (location.hash === h) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = h;
  }, hash);
  await page.waitForFunction((b) => Number(document.body.dataset.rendered || 0) > b, before);
  await assertNoErrorBox(page, hash);
}

/** Run an action that redraws the page (ctx.reload), and wait for the redraw. */
async function redraws(page, action) {
  const before = await rendered(page);
  await action();
  await page.waitForFunction((b) => Number(document.body.dataset.rendered || 0) > b, before);
}

async function assertNoErrorBox(page, where) {
  const errs = await page.locator('#view .notice.err .error').allTextContents();
  assert.deepEqual(errs, [], `error shown on ${where}`);
}

const axeChecked = new Set();
async function axe(page, name) {
  await page.evaluate(axeSource);
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const bad = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe-core: serious or critical violations on ${name}`);
  axeChecked.add(name);
}

// The viewport is tall, so pages rarely scroll: a full-page capture of a page that scrolls makes
// Chromium jump between a later click's mouse down and up. Screenshots are cut to the content.
async function shot(page, name) {
  const bottom = await page.evaluate(() => {
    const last = [...document.querySelectorAll('#main > :not([hidden]), #view > * > *')]
      .map((e) => e.getBoundingClientRect().bottom + window.scrollY);
    return Math.ceil(Math.max(0, ...last));
  });
  const height = Math.max(720, Math.min(VIEWPORT.height, bottom + 40));
  await page.screenshot({ path: path.join(shotDir, `${name}.png`), clip: { x: 0, y: 0, width: VIEWPORT.width, height } });
}

async function login(page, user, password) {
  await page.goto(`${base}/ui/`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(password);
  const before = await rendered(page);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForFunction((b) => Number(document.body.dataset.rendered || 0) > b, before);
}

async function connectProvider(page, { name, url, secret, pick, addByName, shots }) {
  await go(page, '#/providers/connect');
  await page.getByLabel('Kind', { exact: true }).selectOption('openai');
  assert.equal(await page.getByLabel('Base URL').inputValue(), 'https://api.openai.com/v1', 'the base URL is pre-filled for openai');
  await page.getByLabel('Kind', { exact: true }).selectOption('anthropic');
  assert.equal(await page.getByLabel('Base URL').inputValue(), 'https://api.anthropic.com/v1');
  await page.getByLabel('Kind', { exact: true }).selectOption('openai');
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Base URL').fill(url);
  await page.getByLabel('Managed credential: the gateway sends its own key').check();
  await page.getByLabel('Secret (API key)').fill(secret);
  if (shots) await shot(page, 'connect-provider-1-details');
  await page.getByRole('button', { name: 'Save and test connection' }).click();
  const result = page.locator('form .notice').first();
  await result.waitFor();
  for (const m of pick) await page.getByLabel(m, { exact: true }).check();
  if (addByName) {
    await page.getByLabel('Add a model by name').fill(addByName);
    await page.getByRole('button', { name: 'Add model' }).click();
  }
  if (shots) {
    await axe(page, 'connect a provider');
    await shot(page, 'connect-provider-2-test');
  }
  const text = await result.textContent();
  await page.getByRole('button', { name: 'Save allow-list and finish' }).click();
  await page.waitForFunction(() => location.hash === '#/providers' && document.querySelector('[data-page="providers"] table'));
  return text;
}

// ---------------------------------------------------------------------------------------------
const page = await newPage();
// On a failure, say what the page showed, and keep a screenshot of it.
process.on('uncaughtException', async (e) => {
  console.error(e);
  try {
    console.error(`--- page ${page.url()}\n${(await page.locator('#main').innerText()).slice(0, 4000)}`);
    await page.screenshot({ path: path.join(shotDir, 'failure.png'), fullPage: true });
    console.error(`--- screenshot: ${path.join(shotDir, 'failure.png')}`);
    console.error(`--- last requests:\n${recent.slice(-12).join('\n')}`);
  } catch { /* the browser may be gone */ }
  process.exit(1);
});

// Sign in
await page.goto(`${base}/ui/`);
await page.getByLabel('Username').waitFor();
await axe(page, 'sign in');
await shot(page, 'login');
await page.getByLabel('Username').fill('admin');
await page.getByLabel('Password').fill('not-the-password');
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByText('wrong username or password').waitFor();
await login(page, 'admin', adminPassword);
await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
const cookies = await page.context().cookies();
const session = cookies.find((c) => c.name === 'signalbox_session');
assert.ok(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
assert.equal(await page.evaluate(() => document.cookie.includes('signalbox_session')), false, 'scripts cannot read the session cookie');
log('signed in as admin');

// Content capture on, so the trace page shows captured text (as text).
await go(page, '#/settings');
await page.getByLabel(/Capture content/).check();
await redraws(page, () => page.getByRole('button', { name: 'Save project settings' }).click());
assert.ok(await page.getByLabel(/Capture content/).isChecked());
log('content capture turned on in Settings');

// Providers: the file's provider is read-only, with the reason.
await go(page, '#/providers');
await page.getByText('Read-only: defined in the config file').first().waitFor();
const upResult = await connectProvider(page, { name: 'fake', url: upUrl, secret: 'sk-fake-house', pick: ['gpt-4o', 'gpt-4o-mini'], shots: true });
assert.match(upResult, /Connected \(HTTP 200\): the provider offers 2 model/);
const downResult = await connectProvider(page, { name: 'down', url: downUrl, secret: 'sk-down', pick: [], addByName: 'gpt-4o' });
assert.match(downResult, /Test failed/);
await page.getByRole('cell', { name: 'gpt-4o, gpt-4o-mini' }).waitFor();
// Connecting again under a name in use replaces nothing: the credential and the provider are
// created only, and the clash is said.
const credOf = () => page.evaluate(async () => (await (await fetch('/admin/v1/projects/default/credentials')).json()).data.find((c) => c.name === 'fake-key'));
const before = await credOf();
await go(page, '#/providers/connect');
await page.getByLabel('Name', { exact: true }).fill('fake');
await page.getByLabel('Base URL').fill(downUrl);
await page.getByLabel('Managed credential: the gateway sends its own key').check();
await page.getByLabel('Secret (API key)').fill('sk-would-replace');
await page.getByRole('button', { name: 'Save and test connection' }).click();
await page.getByText(/already exists/).first().waitFor();
const kept = await credOf();
assert.deepEqual([kept.version, kept.hint], [before.version, before.hint], 'the existing credential was not replaced');
const stillUp = await page.evaluate(async () => (await (await fetch('/admin/v1/projects/default/providers/fake')).json()).base_url);
assert.equal(stillUp, upUrl, 'the existing provider was not replaced');
await go(page, '#/providers');
await axe(page, 'providers');
await shot(page, 'providers');
log('connected providers fake (test connection listed its models) and down (added by name)');

// Credentials: masked hints; delete refused while in use, naming the users.
await go(page, '#/credentials');
await page.getByRole('cell', { name: 'provider fake' }).waitFor();
assert.ok((await page.locator('td code', { hasText: '****' }).count()) >= 2, 'masked hints');
await page.getByRole('button', { name: 'Rotate credential down-key' }).click();
await page.getByLabel('New value for down-key').fill('sk-down-rotated');
await redraws(page, () => page.getByRole('button', { name: 'Save new value' }).click());
await page.getByRole('cell', { name: '****ted' }).waitFor();
await page.getByRole('button', { name: 'Delete credential fake-key' }).click();
await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
await page.getByText(/still used by providers\.fake/).waitFor();
await axe(page, 'credentials');
await shot(page, 'credentials');
log('credential delete refused while in use, users named; a credential rotated');

// API key: shown once, with a copy button.
await go(page, '#/keys');
await page.getByLabel('Key name').fill('app');
await page.getByLabel('Expires').selectOption('2592000');
await redraws(page, () => page.getByRole('button', { name: 'Create key' }).click());
const key = (await page.getByTestId('new-key').textContent()).trim();
assert.match(key, /^sbx-/);
await page.getByRole('button', { name: 'Copy key' }).waitFor();
await axe(page, 'API keys');
await shot(page, 'keys');
log('gateway key created and shown once');

// A weighted route, targets picked from the providers' allow-lists.
await go(page, '#/routing/new');
await page.getByLabel('Routing identifier').fill('chat-main');
await page.getByLabel('Weighted split').check();
await page.getByLabel('Weighted target 1').selectOption({ label: 'fake / gpt-4o (new target)' });
await page.getByLabel('Share of target 1 (%)').fill('70');
await page.getByLabel('Weighted target 2').selectOption({ label: 'fake / gpt-4o-mini (new target)' });
await page.getByLabel('Share of target 2 (%)').fill('30');
await page.getByText('Total: 100%').waitFor();
await axe(page, 'new routing rule');
await shot(page, 'routing-new-rule');
await page.evaluate(() => { document.addEventListener('submit', (e) => console.log('submit fired', e.target.tagName, e.defaultPrevented), true); document.addEventListener('scroll', () => console.log('scroll', window.scrollY, document.documentElement.scrollHeight, new Error().stack.split('\n').length), true); new ResizeObserver(() => console.log('resize doc', document.documentElement.scrollHeight)).observe(document.documentElement); for (const t of ['pointerdown', 'mousedown', 'mouseup', 'click', 'focusin', 'change', 'input']) document.addEventListener(t, (e) => console.log(t, e.target.tagName, e.target.id, (e.target.textContent || '').slice(0, 15), e.clientX, e.clientY), true); });
await page.getByRole('button', { name: 'Create', exact: true }).click();
await page.getByRole('heading', { name: 'Route chat-main' }).waitFor();
await page.waitForFunction(() => document.querySelector('[data-page="routing"]') && document.body.dataset.rendered);
assert.match(await page.getByTestId('glance').textContent(), /fake-gpt-4o 70% · fake-gpt-4o-mini 30%/);
log('weighted route chat-main created');

// A weighted route naming its targets takes their own default weights: shown as the gateway
// weighs them, and saved as stored when nothing is edited. A preview makes no target.
const adminFetch = (method, p, body) => page.evaluate(async ([m, q, b]) => {
  const csrf = decodeURIComponent((document.cookie.split('; ').find((c) => c.startsWith('signalbox_csrf=')) || '=').split('=')[1]);
  const r = await fetch(`/admin/v1/projects/default/${q}`, {
    method: m, headers: { 'content-type': 'application/json', 'x-signalbox-csrf': csrf }, body: b ? JSON.stringify(b) : undefined,
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}, [method, p, body]);
for (const [p, b] of [
  ['targets/w-big', { provider: 'fake', model: 'gpt-4o', weight: 3 }],
  ['targets/w-small', { provider: 'fake', model: 'gpt-4o-mini' }],
  ['routes/by-default', { strategy: 'weighted', targets: ['w-big', 'w-small'] }],
]) assert.ok((await adminFetch('PUT', p, b)).status < 300, p);
await go(page, '#/routing/routes/by-default');
assert.match(await page.getByTestId('glance').textContent(), /w-big 75% · w-small 25%/);
assert.equal(await page.getByLabel('Share of target 1 (%)').inputValue(), '75');
await page.getByRole('button', { name: 'Preview changes' }).click();
await page.getByText('Nothing changed.').waitFor();
await page.getByLabel('Weighted target 2').selectOption({ label: 'down / gpt-4o (new target)' });
await page.getByRole('button', { name: 'Preview changes' }).click();
await page.getByRole('region', { name: 'Changes to save' }).waitFor();
await page.getByRole('button', { name: 'Discard preview' }).click();
const targetNames = (await adminFetch('GET', 'targets')).body.data.map((t) => t.name);
assert.ok(!targetNames.includes('down-gpt-4o'), `a discarded preview made no target: ${targetNames}`);
assert.equal((await adminFetch('DELETE', 'routes/by-default')).status, 204);
log('default target weights shown and kept; a preview creates nothing');

// Call it with the OpenAI SDK; the trace appears.
const marker = '<img src=x onerror="window.__pwned=1"> hello';
const [first] = sdk(key, 'route::chat-main', 1, marker);
assert.equal(first.status, 200, JSON.stringify(first));
assert.equal(first.provider, 'fake');
await go(page, '#/traces');
await eventually('the trace in the explorer', async () => {
  await redraws(page, () => page.getByRole('button', { name: 'Refresh' }).click());
  return (await page.locator(`a[href="#/traces/${first.id}"]`).count()) === 1;
});
await axe(page, 'traces');
await go(page, `#/traces/${first.id}`);
await page.getByRole('heading', { name: 'Attempts' }).waitFor();
const req = await page.getByTestId('content-request').textContent();
assert.ok(req.includes('<img src=x onerror='), 'captured content is shown as text');
assert.equal(await page.locator('#view img').count(), 0, 'captured markup never becomes an element');
assert.equal(await page.evaluate(() => window.__pwned), undefined);
log('SDK call traced; captured prompt rendered as text');

// Switch to a fallback chain (with the keyboard's Up button), with a diff preview.
await go(page, '#/routing/routes/chat-main');
await page.getByLabel('Fallback chain').check();
await page.getByLabel('Fallback target 1').selectOption('t:fake-gpt-4o-mini');
await page.getByLabel('Fallback target 2').selectOption({ label: 'down / gpt-4o (new target)' });
const order = async () => [await page.getByLabel('Fallback target 1').inputValue(), await page.getByLabel('Fallback target 2').inputValue()];
// Drag and drop, the Up button, and the Down button from the keyboard all reorder the chain.
await page.locator('ul.order li').nth(1).dragTo(page.locator('ul.order li').nth(0));
assert.equal((await order())[1], 't:fake-gpt-4o-mini', 'dragging row 2 onto row 1 moved it first');
await page.getByRole('button', { name: 'Move target 2 up' }).click();
assert.equal((await order())[0], 't:fake-gpt-4o-mini', 'Up moved the target');
await page.getByRole('button', { name: 'Move target 1 down' }).focus();
await page.keyboard.press('Enter');
assert.equal((await order())[1], 't:fake-gpt-4o-mini', 'Down, pressed from the keyboard, moved the target');
await page.getByLabel('Retries per target (optional)').fill('0');
await page.getByRole('button', { name: 'Preview changes' }).click();
await page.getByRole('region', { name: 'Changes to save' }).waitFor();
assert.ok(await page.getByRole('region', { name: 'Changes to save' }).getByText('"fallback"').count() >= 1);
await axe(page, 'route edit preview');
await shot(page, 'route-edit-diff');
await redraws(page, () => page.getByRole('button', { name: 'Save changes' }).click());
assert.match(await page.getByTestId('glance').textContent(), /down-gpt-4o → fake-gpt-4o-mini/);
const [second] = sdk(key, 'route::chat-main');
assert.equal(second.status, 200, JSON.stringify(second));
assert.equal(second.attempts, '2', 'the fallback chain tried down first');
assert.equal(second.provider, 'fake');
assert.equal(second.model, 'gpt-4o-mini');
await go(page, `#/traces/${second.id}`);
await page.getByRole('cell', { name: 'down-gpt-4o' }).waitFor();
await page.getByRole('img', { name: /Attempt timeline/ }).waitFor();
await axe(page, 'trace detail');
await shot(page, 'trace');
log('fallback chain saved after a diff preview; the next call followed it');

// Explain, snippet, history and one-click rollback.
await go(page, '#/routing/routes/chat-main');
await page.getByRole('button', { name: 'Explain' }).click();
await page.getByText('Matched by').waitFor();
await page.getByRole('tab', { name: 'Python' }).click();
assert.match(await page.getByRole('tabpanel').textContent(), /route::chat-main/);
await axe(page, 'route');
await shot(page, 'route');
await redraws(page, () => page.getByRole('button', { name: 'Roll back to version 1' }).click());
assert.match(await page.getByTestId('glance').textContent(), /70%/);
const [third] = sdk(key, 'route::chat-main');
assert.equal(third.status, 200);
assert.equal(third.attempts, '1', 'after the rollback the weighted split serves again');
log('rolled back from history; the next call followed');

// A function pointing at the route, called by its task name.
await go(page, '#/routing');
await page.getByRole('link', { name: 'New function' }).click();
await page.waitForFunction(() => location.hash.includes('kind=functions') && document.querySelector('[data-page="routing"] form'));
await page.getByLabel('Function name').fill('summarise');
await page.getByLabel('Points at a route').check();
await page.getByLabel('The route this function calls').selectOption('chat-main');
await page.getByRole('button', { name: 'Create', exact: true }).click();
await page.getByRole('heading', { name: 'Function summarise' }).waitFor();
const [viaFunction] = sdk(key, 'function::summarise');
assert.equal(viaFunction.status, 200, JSON.stringify(viaFunction));
assert.equal(viaFunction.route, 'function:summarise');
log('function summarise points at route chat-main; function::summarise answers');

// A rule in steps: a weighted step, then the config file's mock target.
await go(page, '#/routing/new');
await page.getByLabel('Routing identifier').fill('tiered');
await page.getByLabel('Steps', { exact: true }).check();
await page.getByLabel('Step 1 target 1', { exact: true }).selectOption('t:fake-gpt-4o');
await page.getByRole('button', { name: 'Add target to step 1' }).click();
await page.getByLabel('Step 1 target 2', { exact: true }).selectOption('t:fake-gpt-4o-mini');
await page.getByLabel('Step 1 weight 2', { exact: true }).fill('3');
await page.getByLabel('Step 2 target 1', { exact: true }).selectOption('t:demo-echo');
await page.getByRole('button', { name: 'Create', exact: true }).click();
await page.getByRole('heading', { name: 'Route tiered' }).waitFor();
assert.match(await page.getByTestId('glance').textContent(), /1\. Weighted split: fake-gpt-4o, fake-gpt-4o-mini ⇒ 2\. Direct: demo-echo/);
const [viaSteps] = sdk(key, 'route::tiered');
assert.equal(viaSteps.status, 200, JSON.stringify(viaSteps));
assert.equal(viaSteps.provider, 'fake');
log('a rule in steps serves from its first step');

// The trace explorer's filters.
await eventually('the function call in the filtered explorer', async () => {
  await go(page, '#/traces?route=function%3Asummarise');
  return (await page.locator(`a[href="#/traces/${viaFunction.id}"]`).count()) === 1;
});
assert.equal(await page.getByLabel('Route', { exact: true }).inputValue(), 'function:summarise');
assert.equal(await page.locator('tbody tr').count(), 1, 'only the function call matches');
await page.getByLabel('Route', { exact: true }).fill('route:chat-main');
await page.getByLabel('Provider', { exact: true }).fill('fake');
await redraws(page, () => page.getByRole('button', { name: 'Apply filters' }).click());
assert.equal(await page.locator('tbody tr').count(), 3, 'three calls of route chat-main');
log('trace filters narrow the list');

// Disabling a provider that a target still uses is refused, naming the target.
await go(page, '#/providers');
await page.getByRole('button', { name: 'Disable provider down' }).click();
await page.getByRole('dialog').getByRole('button', { name: 'Disable' }).click();
const refusal = await page.locator('#view .notice.err').first().textContent();
assert.match(refusal, /targets\.down-gpt-4o\.model: provider 'down' does not list model 'gpt-4o'/);
log('disabling a provider in use is refused, with the users named');

// An experiment, and its per-variant figures.
await go(page, '#/experiments');
await page.getByRole('link', { name: 'New experiment' }).click();
await page.waitForFunction(() => location.hash.startsWith('#/routing/new') && document.querySelector('[data-page="routing"] form'));
await page.getByLabel('Routing identifier').fill('tone');
assert.ok(await page.getByLabel('A/B experiment').isChecked());
await page.getByLabel('Sticky assignment').selectOption('user');
await page.getByLabel('Variant 1 target').selectOption('t:fake-gpt-4o');
await page.getByLabel('Variant 1 temperature').fill('0.2');
await page.getByLabel('Variant 2 target').selectOption('t:fake-gpt-4o-mini');
await page.getByLabel('Variant 2 max_tokens').fill('100');
await page.getByRole('button', { name: 'Create', exact: true }).click();
await page.getByRole('heading', { name: 'Route tone' }).waitFor();
const calls = sdk(key, 'route::tone', 8);
assert.ok(calls.every((c) => c.status === 200 && (c.variant === 'a' || c.variant === 'b')), JSON.stringify(calls));
await go(page, '#/experiments');
const figures = page.getByRole('table', { name: 'Per-variant figures' });
await figures.waitFor();
const rows = await figures.locator('tbody tr').allTextContents();
assert.equal(rows.length, 2, rows.join('\n'));
const counted = await eventually('8 requests in the figures', async () => {
  await go(page, '#/experiments');
  const cells = await page.getByRole('table', { name: 'Per-variant figures' }).locator('tbody tr td:nth-child(3)').allTextContents();
  const sum = cells.reduce((a, c) => a + Number(c.replace(/,/g, '')), 0);
  return sum === 8 ? cells : null;
});
assert.equal(counted.length, 2);
await page.getByRole('img', { name: /Requests per variant/ }).waitFor();
await axe(page, 'experiments');
await shot(page, 'experiments');
log(`experiment tone created; per-variant requests ${counted.join(' / ')}`);

// Overview
await go(page, '#/overview');
await page.getByRole('img', { name: /Requests and errors/ }).waitFor();
assert.ok(Number((await page.locator('.card .v').first().textContent()).replace(/,/g, '')) >= 11);
await axe(page, 'overview');
await shot(page, 'overview');
await go(page, '#/traces');
await shot(page, 'traces');
log('overview shows the traffic');

// A viewer, made in Settings.
await go(page, '#/settings');
await page.getByLabel('User name').fill('vera');
await page.getByLabel('Initial password').fill('viewer-pass-1');
await page.getByLabel('Role in default').selectOption('viewer');
await redraws(page, () => page.getByRole('button', { name: 'Create user' }).click());
await page.getByRole('cell', { name: 'default: viewer' }).waitFor();
await axe(page, 'settings');
await shot(page, 'settings');
log('viewer vera created');

// Revoke the key: calls with it are refused.
await go(page, '#/keys');
await page.getByRole('button', { name: 'Revoke key app' }).click();
await redraws(page, () => page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click());
await page.getByText(/^revoked /).waitFor();
const [refused] = sdk(key, 'route::chat-main');
assert.equal(refused.status, 401, JSON.stringify(refused));
assert.equal(refused.code, 'auth');
log('key revoked; the SDK call with it got 401');

// Sign out; the session is gone.
await page.getByRole('button', { name: 'Log out' }).click();
await page.getByRole('heading', { name: 'Sign in to Signalbox' }).waitFor();
const me = await page.evaluate(async () => (await fetch('/admin/v1/me')).status);
assert.equal(me, 401, 'after logout the old session is refused');
log('logged out');

// The viewer sees no write control, and a write through fetch is refused.
await login(page, 'vera', 'viewer-pass-1');
for (const [hash, name] of [
  ['#/overview', 'overview'], ['#/providers', 'providers'], ['#/credentials', 'credentials'],
  ['#/routing', 'routing'], ['#/routing/routes/chat-main', 'route'], ['#/keys', 'keys'],
  ['#/traces', 'traces'], [`#/traces/${second.id}`, 'trace'], ['#/experiments', 'experiments'],
  ['#/settings', 'settings'],
]) {
  await go(page, hash);
  const controls = await page.locator('#view button:visible, #view a.button:visible, #view input:visible:not([disabled]), #view select:visible:not([disabled])').evaluateAll(
    (els) => els.map((e) => e.getAttribute('aria-label') || e.textContent.trim() || e.getAttribute('name') || e.id));
  const writes = controls.filter((c) => WRITE_WORDS.test(c));
  assert.deepEqual(writes, [], `the viewer sees write controls on ${name}`);
  if (name === 'route') assert.equal(await page.getByRole('heading', { name: 'Edit', exact: true }).count(), 0, 'no edit form');
  await axe(page, `${name} (viewer)`);
}
const viewerWrite = await page.evaluate(async () => {
  const csrf = decodeURIComponent((document.cookie.split('; ').find((c) => c.startsWith('signalbox_csrf=')) || '=').split('=')[1]);
  const post = (headers) => fetch('/admin/v1/projects/default/routes', {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ name: 'sneaky', strategy: 'single', targets: ['fake-gpt-4o'] }),
  }).then((r) => r.status);
  return { withCsrf: await post({ 'x-signalbox-csrf': csrf }), withoutCsrf: await post({}) };
});
assert.deepEqual(viewerWrite, { withCsrf: 403, withoutCsrf: 403 }, 'the API refuses the viewer\'s write');
log('viewer: no write control on any page; writes refused (403)');

// The viewer changes their own password, confirming the present one; the new one signs in.
await go(page, '#/settings');
await page.getByLabel('Current password').fill('viewer-pass-1');
await page.getByLabel('New password').fill('viewer-pass-2');
await page.getByRole('button', { name: 'Change password' }).click();
await page.getByRole('heading', { name: 'Sign in to Signalbox' }).waitFor();
await login(page, 'vera', 'viewer-pass-2');
log('viewer changed their own password and signed in with it');

assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violation');
assert.deepEqual(pageErrors, [], 'no uncaught page error');
log(`axe-core: no serious or critical violation on ${axeChecked.size} views`);
await browser.close();
console.log('all checks passed');

// API keys: what applications present to /v1. Created keys are shown once.

import { api, proj, qs } from '../api.js';
import { h, field, table, clear, errorBox, toast, confirmDialog, fmtTime, badge, copyText } from '../dom.js';

export async function render(ctx, root) {
  root.append(h('h1', {}, 'API keys'));
  root.append(h('p', { class: 'muted' }, 'Gateway keys of this project. Signalbox keeps only a hash: a key is shown once, when it is created.'));
  const reveal = h('div', { 'aria-live': 'polite' });
  root.append(reveal);
  const keys = (await api.get(proj(ctx.project, 'keys'))).data || [];
  // Last use: the newest trace made with each key (at most 50 keys are looked up).
  const lastUsed = {};
  await Promise.all(keys.slice(0, 50).map(async (k) => {
    try {
      const t = await api.get(`${proj(ctx.project, 'traces')}${qs({ key: k.id, limit: 1 })}`);
      lastUsed[k.id] = (t.data || [])[0]?.time || null;
    } catch { lastUsed[k.id] = null; }
  }));
  if (!ctx.alive()) return;
  const msg = h('div', { 'aria-live': 'polite' });
  root.append(msg);
  const now = Date.now();
  root.append(table(null, [
    { label: 'Name' }, { label: 'Prefix' }, { label: 'Created' }, { label: 'Expires' }, { label: 'Last used' },
    { label: 'State' }, { label: 'Actions' },
  ], keys.map((k) => {
    const expired = k.expires_at && Date.parse(k.expires_at) <= now;
    const stateBadge = k.revoked_at ? badge(`revoked ${fmtTime(k.revoked_at)}`, 'err')
      : (expired ? badge('expired', 'warn') : badge('active', 'ok'));
    return [
      k.name,
      h('code', {}, `${k.prefix}…`),
      `${fmtTime(k.created_at)} by ${k.created_by}`,
      k.expires_at ? fmtTime(k.expires_at) : 'never',
      lastUsed[k.id] ? fmtTime(lastUsed[k.id]) : h('span', { class: 'muted' }, 'not in stored traces'),
      stateBadge,
      ctx.canEdit && !k.revoked_at ? actions(ctx, k, msg, reveal) : '—',
    ];
  }), 'No keys in the store. Keys from the config file ([api_keys]) are not listed here.'));

  if (!ctx.canEdit) return;
  const name = field('Key name', 'input', { required: true, autocomplete: 'off', maxlength: 128 }, [], 'Who uses it, e.g. billing-service.');
  const expiry = field('Expires', 'select', { value: '' },
    [['', 'Never'], ['86400', 'In 1 day'], ['2592000', 'In 30 days'], ['7776000', 'In 90 days'], ['date', 'On a date…']]);
  const date = field('Expiry date (UTC)', 'input', { type: 'date' });
  date.wrap.hidden = true;
  expiry.input.addEventListener('change', () => { date.wrap.hidden = expiry.input.value !== 'date'; });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel' }, h('h2', {}, 'Create a key'), name.wrap, expiry.wrap, date.wrap, out,
    h('button', { type: 'submit' }, 'Create key'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    const body = { name: name.input.value.trim() };
    if (expiry.input.value === 'date') {
      if (!date.input.value) { out.append(errorBox(new Error('Choose the expiry date'))); return; }
      body.expires_at = `${date.input.value}T00:00:00Z`;
    } else if (expiry.input.value) {
      body.expires_in_seconds = Number(expiry.input.value);
    }
    try {
      const k = await api.post(proj(ctx.project, 'keys'), body);
      await ctx.reload();
      showKey(document.querySelector('[data-page="keys"] [aria-live]'), k, 'created');
    } catch (err) {
      out.append(errorBox(err));
    }
  });
  root.append(form);
}

function showKey(box, k, what) {
  if (!box) return;
  const code = h('div', { class: 'secret', 'data-testid': 'new-key' }, k.key);
  box.append(h('div', { class: 'notice', role: 'alert' },
    h('p', {}, h('strong', {}, `Key ${k.name} ${what}. Copy it now: it is not shown again.`)),
    code,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => copyText(k.key, code) }, 'Copy key'))));
}

function actions(ctx, k, msg, reveal) {
  const revoke = h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke key ${k.name}` }, 'Revoke');
  const rotate = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Rotate key ${k.name}` }, 'Rotate');
  revoke.addEventListener('click', async () => {
    if (!await confirmDialog(`Revoke key ${k.name} (${k.prefix}…)? Calls with it are refused from the next request on.`, 'Revoke', true)) return;
    try {
      await api.del(proj(ctx.project, 'keys', k.id));
      toast(`Key ${k.name} revoked`);
      ctx.reload();
    } catch (err) {
      clear(msg).append(errorBox(err));
    }
  });
  rotate.addEventListener('click', async () => {
    if (!await confirmDialog(`Rotate key ${k.name}? A new key is made now; the old one keeps working for an hour.`, 'Rotate')) return;
    try {
      const nk = await api.post(proj(ctx.project, 'keys', k.id, 'rotate'), { grace_seconds: 3600 });
      await ctx.reload();
      showKey(document.querySelector('[data-page="keys"] [aria-live]'), nk, 'rotated');
    } catch (err) {
      clear(msg).append(errorBox(err));
    }
  });
  return h('div', { class: 'actions' }, rotate, revoke);
}

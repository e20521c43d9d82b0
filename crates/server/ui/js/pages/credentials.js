// Credentials: names and masked hints, who uses each, create, rotate (replace the value), delete.

import { api, proj } from '../api.js';
import { h, field, table, clear, errorBox, toast, confirmDialog, fmtTime } from '../dom.js';
import { list } from '../catalog.js';

export async function render(ctx, root) {
  root.append(h('h1', {}, 'Credentials'));
  root.append(h('p', { class: 'muted' }, 'Secrets are stored encrypted and never shown again: only a hint of their last characters.'));
  const [creds, providers, targets] = await Promise.all([
    api.get(proj(ctx.project, 'credentials')),
    list(ctx.project, 'providers'),
    list(ctx.project, 'targets'),
  ]);
  if (!ctx.alive()) return;
  const usedBy = (name) => {
    const ref = `credential::${name}`;
    return [
      ...providers.filter((p) => p.credential === ref).map((p) => `provider ${p.name}`),
      ...targets.filter((t) => t.credential === ref).map((t) => `target ${t.name}`),
    ];
  };
  const msg = h('div', { 'aria-live': 'polite' });
  root.append(msg);
  root.append(table(null, [
    { label: 'Name' }, { label: 'Hint' }, { label: 'Used by' }, { label: 'Updated' }, { label: 'Actions' },
  ], (creds.data || []).map((c) => {
    const users = usedBy(c.name);
    return [
      h('code', {}, c.name),
      h('code', {}, c.hint),
      users.length ? users.join(', ') : h('span', { class: 'muted' }, 'unused'),
      fmtTime(c.updated_at),
      ctx.canEdit ? actions(ctx, c, msg) : '—',
    ];
  }), 'No stored credentials.'));

  if (!ctx.canEdit) return;
  const name = field('Name', 'input', { required: true, autocomplete: 'off', pattern: '[A-Za-z0-9._\\-]{1,128}' });
  const value = field('Secret value', 'input', { type: 'password', required: true, autocomplete: 'off' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel' }, h('h2', {}, 'Store a credential'), name.wrap, value.wrap, out,
    h('button', { type: 'submit' }, 'Store credential'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    try {
      const r = await api.post(proj(ctx.project, 'credentials'), { name: name.input.value.trim(), value: value.input.value });
      value.input.value = '';
      toast(`Stored; refer to it as ${r.reference}`);
      ctx.reload();
    } catch (err) {
      out.append(errorBox(err));
    }
  });
  root.append(form);
}

function actions(ctx, c, msg) {
  const rotate = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Rotate credential ${c.name}` }, 'Rotate');
  const del = h('button', { type: 'button', class: 'danger small', 'aria-label': `Delete credential ${c.name}` }, 'Delete');
  rotate.addEventListener('click', () => {
    const v = field(`New value for ${c.name}`, 'input', { type: 'password', autocomplete: 'off' });
    const save = h('button', { type: 'submit' }, 'Save new value');
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const form = h('form', { class: 'panel' }, h('p', {}, 'Every provider and target using this credential switches to the new value at once.'), v.wrap, h('div', { class: 'actions' }, save, cancel));
    cancel.addEventListener('click', () => form.remove());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        // At the version listed: a value changed meanwhile by someone else is not overwritten.
        await api.put(proj(ctx.project, 'credentials', c.name), { value: v.input.value }, { 'if-match': `"${c.version}"` });
        toast(`Credential ${c.name} rotated`);
        ctx.reload();
      } catch (err) {
        // The form stays, its value kept, beside the error.
        msg.querySelectorAll('.notice.err').forEach((n) => n.remove());
        msg.append(errorBox(err));
      }
    });
    clear(msg).append(form);
    v.input.focus();
  });
  del.addEventListener('click', async () => {
    if (!await confirmDialog(`Delete credential ${c.name}? Anything still using it must be changed first.`, 'Delete', true)) return;
    try {
      await api.del(proj(ctx.project, 'credentials', c.name), { 'if-match': `"${c.version}"` });
      toast(`Credential ${c.name} deleted`);
      ctx.reload();
    } catch (err) {
      clear(msg).append(errorBox(err));
    }
  });
  return h('div', { class: 'actions' }, rotate, del);
}

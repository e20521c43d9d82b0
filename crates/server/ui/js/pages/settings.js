// Settings: the project (description, content capture), trace retention, users and roles.

import { api, proj } from '../api.js';
import { h, field, check, table, clear, errorBox, toast, confirmDialog, fmtTime } from '../dom.js';

const ROLES = ['viewer', 'editor', 'owner'];

export async function render(ctx, root) {
  root.append(h('h1', {}, 'Settings'));
  const [project, server] = await Promise.all([
    api.get(proj(ctx.project)),
    api.get('settings'),
  ]);
  if (!ctx.alive()) return;

  // Project
  const desc = field('Description', 'input', { value: project.description || '', disabled: !ctx.isOwner });
  const capture = check('Capture content: keep request and answer text on this project\'s traces (up to 32 KiB each)',
    { checked: Boolean(project.content_capture), disabled: !ctx.isOwner });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', 'aria-labelledby': 'proj-title' },
    h('h2', { id: 'proj-title' }, `Project ${project.name}`),
    h('p', { class: 'muted' }, `Created ${fmtTime(project.created_at)}. Your role: ${ctx.isAdmin ? 'admin' : ((ctx.me.roles || {})[ctx.project] || 'none')}.`),
    desc.wrap, capture.wrap, out);
  if (ctx.isOwner) {
    form.append(h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save project settings')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(out);
      try {
        await api.patch(proj(ctx.project), { description: desc.input.value, content_capture: capture.input.checked });
        toast('Project settings saved');
        ctx.reload();
      } catch (err) {
        out.append(errorBox(err));
      }
    });
  } else {
    form.append(h('p', { class: 'hint' }, 'Only an owner of the project changes these.'));
  }
  root.append(form);

  // Retention
  const tr = server.traces || {};
  root.append(h('section', { class: 'panel', 'aria-labelledby': 'ret-title' },
    h('h2', { id: 'ret-title' }, 'Traces and retention'),
    h('dl', { class: 'props' },
      h('dt', {}, 'Traces stored'), h('dd', {}, tr.stored ? 'yes' : 'no ([store] traces = false: metrics and logs only)'),
      h('dt', {}, 'Retention'), h('dd', {}, tr.retention_days ? `${tr.retention_days} days` : 'kept forever'),
      h('dt', {}, 'Signalbox version'), h('dd', {}, server.version || '—')),
    h('p', { class: 'hint' }, 'Set in the config file: [store] traces and trace_retention_days.')));

  // Own password
  // Users other than the admin confirm with their present password (the API requires it).
  const current = ctx.isAdmin ? null
    : field('Current password', 'input', { type: 'password', autocomplete: 'current-password', required: true });
  const pw = field('New password', 'input', { type: 'password', autocomplete: 'new-password', minlength: 8 });
  const pwOut = h('div', { 'aria-live': 'polite' });
  const pwForm = h('form', { class: 'panel', 'aria-labelledby': 'pw-title' }, h('h2', { id: 'pw-title' }, 'Your password'),
    h('p', { class: 'hint' }, 'Changing it signs out every session of yours, this one included.'),
    current ? current.wrap : null, pw.wrap, pwOut, h('button', { type: 'submit', class: 'secondary' }, 'Change password'));
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(pwOut);
    const body = { password: pw.input.value };
    if (current) body.current_password = current.input.value;
    try {
      await api.post(`users/${encodeURIComponent(ctx.me.user)}/password`, body);
      location.reload();
    } catch (err) {
      pwOut.append(errorBox(err));
    }
  });
  root.append(pwForm);

  if (!ctx.isAdmin) return;
  await usersSection(ctx, root);
}

async function usersSection(ctx, root) {
  const users = (await api.get('users')).data || [];
  if (!ctx.alive()) return;
  const msg = h('div', { 'aria-live': 'polite' });
  const sec = h('section', { 'aria-labelledby': 'users-title' }, h('h2', { id: 'users-title' }, 'Users and roles'), msg);
  sec.append(table(null, [{ label: 'User' }, { label: 'Roles' }, { label: `Role in ${ctx.project}` }, { label: 'Actions' }],
    users.map((u) => {
      const name = u.name || u.user;
      const roles = u.roles || {};
      const isAdmin = u.is_admin || name === 'admin';
      if (isAdmin) return [name, 'admin: every right in every project', '—', '—'];
      const id = `role-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
      const sel = h('select', { id, 'aria-label': `Role of ${name} in ${ctx.project}` });
      for (const [v, t] of [['', 'none'], ...ROLES.map((r) => [r, r])]) sel.append(h('option', { value: v }, t));
      sel.value = roles[ctx.project] || '';
      sel.addEventListener('change', async () => {
        const next = { ...roles };
        if (sel.value) next[ctx.project] = sel.value; else delete next[ctx.project];
        try {
          await api.put(`users/${encodeURIComponent(name)}/roles`, next);
          toast(`${name} is now ${sel.value || 'without a role'} in ${ctx.project}`);
          ctx.reload();
        } catch (err) {
          clear(msg).append(errorBox(err));
        }
      });
      const del = h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Delete user ${name}`,
        onclick: async () => {
          if (!await confirmDialog(`Delete user ${name} and every token of theirs?`, 'Delete', true)) return;
          try { await api.del(`users/${encodeURIComponent(name)}`); toast(`User ${name} deleted`); ctx.reload(); } catch (err) { clear(msg).append(errorBox(err)); }
        },
      }, 'Delete');
      return [name, Object.entries(roles).map(([p, r]) => `${p}: ${r}`).join(', ') || 'none', sel, del];
    })));

  const name = field('User name', 'input', { autocomplete: 'off', required: true });
  const password = field('Initial password', 'input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const role = field(`Role in ${ctx.project}`, 'select', { value: 'viewer' }, ROLES);
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', 'aria-labelledby': 'new-user-title' }, h('h3', { id: 'new-user-title' }, 'Create a user'),
    h('div', { class: 'row' }, name.wrap, password.wrap, role.wrap), out, h('button', { type: 'submit' }, 'Create user'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    try {
      await api.post('users', { name: name.input.value.trim(), password: password.input.value, roles: { [ctx.project]: role.input.value } });
      toast(`User ${name.input.value.trim()} created`);
      ctx.reload();
    } catch (err) {
      out.append(errorBox(err));
    }
  });
  sec.append(form);
  root.append(sec);
}

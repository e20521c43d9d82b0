// Providers: the list, the connect flow in steps, edit, disable and enable.

import { api, call, proj } from '../api.js';
import { h, field, check, table, badge, clear, errorBox, toast, confirmDialog, uid } from '../dom.js';
import { list, fileNote, managedBadge, slug } from '../catalog.js';

export const KINDS = [
  ['openai', 'OpenAI (or any OpenAI-compatible server)'],
  ['anthropic', 'Anthropic'],
  ['gemini', 'Google Gemini'],
  ['azure-openai', 'Azure OpenAI'],
  ['mock', 'Mock (built in, offline)'],
];

export const BASE_URLS = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com/v1',
  gemini: 'https://generativelanguage.googleapis.com/v1beta',
  'azure-openai': 'https://YOUR-RESOURCE.openai.azure.com',
  mock: '',
};

export async function render(ctx, root, args) {
  if (args[0] === 'connect') return connect(ctx, root);
  if (args[0] === 'edit' && args[1]) return edit(ctx, root, args[1]);
  return listPage(ctx, root);
}

function disabled(p) {
  return Array.isArray(p.models) && p.models.length === 0 && p.passthrough === 'off';
}

async function listPage(ctx, root) {
  root.append(h('div', { class: 'toolbar' },
    h('h1', {}, 'Providers'),
    ctx.canEdit ? h('a', { class: 'button', href: '#/providers/connect' }, 'Connect a provider') : null));
  const providers = await list(ctx.project, 'providers');
  if (!ctx.alive()) return;
  const msg = h('div', { 'aria-live': 'polite' });
  root.append(msg);
  root.append(table(null, [
    { label: 'Name' }, { label: 'Kind' }, { label: 'Base URL' }, { label: 'Models (allow-list)' },
    { label: 'Credential' }, { label: 'State' }, { label: 'Actions' },
  ], providers.map((p) => [
    h('span', {}, h('strong', {}, p.name), ' ', managedBadge(p)),
    p.kind || '(from the id)',
    h('code', {}, p.base_url || '(default)'),
    (p.models || []).length ? (p.models || []).join(', ') : h('span', { class: 'muted' }, 'none'),
    p.credential ? h('code', {}, p.credential)
      : h('span', { class: 'muted' }, p.kind === 'mock' ? 'none needed' : 'callers\' own keys'),
    disabled(p) ? badge('disabled', 'warn') : badge('serving', 'ok'),
    actions(ctx, p, msg),
  ]), 'No providers yet. Connect one to start routing.'));
}

function actions(ctx, p, msg) {
  if (p.managed_by === 'file') {
    return h('span', { class: 'muted' }, 'Read-only: defined in the config file');
  }
  if (!ctx.canEdit) return h('span', { class: 'muted' }, '—');
  const box = h('div', { class: 'actions' });
  box.append(h('a', { class: 'button secondary small', href: `#/providers/edit/${encodeURIComponent(p.name)}`, 'aria-label': `Edit provider ${p.name}` }, 'Edit'));
  if (disabled(p)) {
    box.append(h('button', {
      type: 'button', class: 'secondary small', 'aria-label': `Enable provider ${p.name}`,
      onclick: () => enable(ctx, p, msg),
    }, 'Enable'));
  } else {
    box.append(h('button', {
      type: 'button', class: 'danger small', 'aria-label': `Disable provider ${p.name}`,
      onclick: () => disable(ctx, p, msg),
    }, 'Disable'));
  }
  return box;
}

async function disable(ctx, p, msg) {
  const ok = await confirmDialog(`Disable provider ${p.name}? It will serve no model (its allow-list is emptied and passthrough turned off). Routes still using it must be changed first. Enable brings its last allow-list back.`, 'Disable', true);
  if (!ok) return;
  try {
    await api.patch(proj(ctx.project, 'providers', p.name), { models: [], passthrough: 'off' }, { 'if-match': `"${p.version}"` });
    toast(`Provider ${p.name} disabled`);
    ctx.reload();
  } catch (e) {
    clear(msg).append(errorBox(e));
  }
}

async function enable(ctx, p, msg) {
  try {
    const hist = (await api.get(proj(ctx.project, 'providers', p.name, 'history'))).data || [];
    const last = hist.find((v) => v.body && Array.isArray(v.body.models) && v.body.models.length);
    if (!last) throw new Error('no earlier version of this provider had models; edit it to choose some');
    await api.post(proj(ctx.project, 'providers', p.name, 'rollback'), { version: last.version });
    toast(`Provider ${p.name} enabled (version ${last.version} restored)`);
    ctx.reload();
  } catch (e) {
    clear(msg).append(errorBox(e));
  }
}

/** The model allow-list picker: checkboxes for known models, plus a free-text add. */
function modelPicker(initial, offered) {
  const chosen = new Set(initial);
  const all = [...new Set([...offered, ...initial])];
  const listEl = h('div', { class: 'model-list', role: 'group', 'aria-label': 'Models the provider may serve' });
  const draw = () => {
    clear(listEl);
    if (all.length === 0) listEl.append(h('p', { class: 'muted' }, 'No models yet: test the connection, or add one by name.'));
    for (const m of all) {
      const c = check(m, { value: m, checked: chosen.has(m), 'data-model': m });
      c.input.addEventListener('change', () => { if (c.input.checked) chosen.add(m); else chosen.delete(m); });
      listEl.append(h('div', {}, c.wrap));
    }
  };
  draw();
  const add = field('Add a model by name', 'input', { placeholder: 'gpt-4o-mini' });
  const addBtn = h('button', {
    type: 'button', class: 'secondary',
    onclick: () => {
      const v = add.input.value.trim();
      if (!v) return;
      if (!all.includes(v)) all.push(v);
      chosen.add(v);
      add.input.value = '';
      draw();
    },
  }, 'Add model');
  return {
    el: h('div', {}, listEl, h('div', { class: 'row' }, add.wrap, addBtn)),
    offer(models) { for (const m of models) if (!all.includes(m)) all.push(m); draw(); },
    value: () => all.filter((m) => chosen.has(m)),
  };
}

async function connect(ctx, root) {
  root.append(h('h1', {}, 'Connect a provider'));
  if (!ctx.canEdit) {
    root.append(h('p', {}, 'Connecting a provider needs the editor role in this project.'));
    return;
  }
  const creds = (await api.get(proj(ctx.project, 'credentials'))).data || [];
  const stepNames = ['Kind and name', 'Address', 'Credential', 'Test and models'];
  const stepper = h('ol', { class: 'steps', 'aria-label': 'Steps' });
  const stepItems = stepNames.map((n, i) => h('li', {}, `${i + 1}. ${n}`));
  stepper.append(...stepItems);
  const status = h('div', { 'aria-live': 'polite' });
  root.append(stepper, status);

  // Step 1
  const kind = field('Kind', 'select', { name: 'kind' }, KINDS,
    'The adapter: how Signalbox speaks to this provider.');
  const name = field('Name', 'input', { name: 'name', required: true, pattern: '[A-Za-z0-9._\\-]{1,128}', autocomplete: 'off' },
    [], 'Letters, digits, "-", "_" or "."; unique in this install. Callers may use NAME::MODEL for passthrough.');
  const s1 = h('fieldset', {}, h('legend', {}, 'Step 1: kind and name'), kind.wrap, name.wrap);
  // Step 2
  const base = field('Base URL', 'input', { name: 'base_url', type: 'url', value: BASE_URLS.openai, autocomplete: 'off' },
    [], 'Include the version segment, e.g. https://api.openai.com/v1. Pre-filled for known kinds.');
  const apiVersion = field('API version (Azure)', 'input', { name: 'api_version', value: '2024-10-21' });
  apiVersion.wrap.hidden = true;
  const s2 = h('fieldset', {}, h('legend', {}, 'Step 2: address'), base.wrap, apiVersion.wrap);
  kind.input.addEventListener('change', () => {
    base.input.value = BASE_URLS[kind.input.value] ?? '';
    base.wrap.hidden = kind.input.value === 'mock';
    apiVersion.wrap.hidden = kind.input.value !== 'azure-openai';
  });
  // Step 3
  const modeName = uid('mode');
  const managed = h('input', { type: 'radio', name: modeName, value: 'managed', id: `${modeName}-m`, checked: true });
  const byok = h('input', { type: 'radio', name: modeName, value: 'byok', id: `${modeName}-b` });
  const existing = field('Stored credential', 'select', { name: 'credential' },
    [['', 'A new credential (enter the secret below)'], ...creds.map((c) => [c.name, `${c.name} (${c.hint})`])]);
  const secret = field('Secret (API key)', 'input', { name: 'secret', type: 'password', autocomplete: 'off' },
    [], 'Stored encrypted under the master key; never shown again.');
  const credName = field('Credential name', 'input', { name: 'credential_name', autocomplete: 'off' }, [],
    'Defaults to NAME-key.');
  const managedBox = h('div', {}, existing.wrap, secret.wrap, credName.wrap);
  existing.input.addEventListener('change', () => {
    secret.wrap.hidden = existing.input.value !== '';
    credName.wrap.hidden = existing.input.value !== '';
  });
  const setMode = () => { managedBox.hidden = !managed.checked; };
  managed.addEventListener('change', setMode);
  byok.addEventListener('change', setMode);
  const s3 = h('fieldset', {}, h('legend', {}, 'Step 3: credential'),
    h('div', { class: 'choices', role: 'radiogroup', 'aria-label': 'Credential mode' },
      h('div', {}, managed, h('label', { for: managed.id, class: 'inline' }, 'Managed credential: the gateway sends its own key')),
      h('div', {}, byok, h('label', { for: byok.id, class: 'inline' }, 'Bring your own key: callers send their provider key (passthrough)'))),
    managedBox);
  // Step 4
  const picker = modelPicker([], []);
  const testOut = h('div', { 'aria-live': 'polite' });
  const testBtn = h('button', { type: 'button' }, 'Save and test connection');
  const finishBtn = h('button', { type: 'button', disabled: true }, 'Save allow-list and finish');
  const s4 = h('fieldset', {}, h('legend', {}, 'Step 4: test the connection and choose models'),
    h('p', { class: 'hint' }, 'Saving creates the provider with no models yet, then lists the models it offers with its credential. Tick the ones it may serve.'),
    h('div', { class: 'actions' }, testBtn), testOut, picker.el, h('div', { class: 'actions' }, finishBtn));

  const form = h('form', { novalidate: true }, s1, s2, s3, s4);
  root.append(form);
  form.addEventListener('submit', (e) => e.preventDefault());
  const sections = [s1, s2, s3, s4];
  const markStep = () => {
    // The step whose fields hold focus is the current one.
    const active = sections.findIndex((sec) => sec.contains(document.activeElement));
    stepItems.forEach((li, i) => {
      if (i === active) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
    });
  };
  form.addEventListener('focusin', markStep);
  stepItems[0].setAttribute('aria-current', 'step');

  let created = false;
  // What this flow last wrote: the provider is re-saved only at that version.
  let createdEtag = '';
  let createdModels = [];
  testBtn.addEventListener('click', async () => {
    clear(status);
    clear(testOut);
    const n = name.input.value.trim();
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(n)) {
      status.append(errorBox(new Error('Give the provider a name: letters, digits, "-", "_" or "."')));
      name.input.focus();
      return;
    }
    testBtn.disabled = true;
    try {
      const body = { kind: kind.input.value, models: [] };
      if (kind.input.value !== 'mock') body.base_url = base.input.value.trim();
      if (kind.input.value === 'azure-openai') body.api_version = apiVersion.input.value.trim();
      if (managed.checked) {
        let cname = existing.input.value;
        if (!cname) {
          if (!secret.input.value.trim()) throw new Error('Enter the secret for the managed credential, or choose bring-your-own-key');
          cname = slug(credName.input.value.trim() || `${n}-key`);
          // Create only: a credential of that name already in use is never replaced from here.
          await api.post(proj(ctx.project, 'credentials'), { name: cname, value: secret.input.value });
          secret.input.value = '';
          existing.input.append(h('option', { value: cname }, cname));
          existing.input.value = cname;
          existing.input.dispatchEvent(new Event('change'));
        }
        body.credential = `credential::${cname}`;
      } else {
        body.passthrough = 'caller_key';
      }
      if (created) {
        // The provider this flow made: replaced only at the version this flow left it at.
        body.models = createdModels;
        const put = await call('PUT', proj(ctx.project, 'providers', n), body, { 'if-match': createdEtag });
        createdEtag = put.headers.get('etag') || '';
      } else {
        // Create only: connecting under the name of an existing provider is refused (409).
        const made = await call('POST', proj(ctx.project, 'providers'), { name: n, ...body });
        createdEtag = made.headers.get('etag') || '';
        createdModels = (made.body && made.body.models) || [];
      }
      created = true;
      stepItems.slice(0, 3).forEach((li) => li.classList.add('done'));
      const r = await api.post(proj(ctx.project, 'providers', n, 'test'));
      if (r.status === 'ok') {
        testOut.append(h('p', { class: 'notice' }, `Connected (HTTP ${r.http_status ?? 200}): the provider offers ${r.models.length} model(s). Tick the ones to allow.`));
        picker.offer(r.models || []);
      } else if (r.status === 'unsupported') {
        testOut.append(h('p', { class: 'notice warn' }, `${r.message}. Add the deployments' models by name.`));
      } else {
        testOut.append(h('p', { class: 'notice err' }, `Test failed: ${r.message}${r.http_status ? ` (HTTP ${r.http_status})` : ''}. You can still add models by name.`));
      }
      finishBtn.disabled = false;
    } catch (e) {
      status.append(errorBox(e));
    } finally {
      testBtn.disabled = false;
    }
  });
  finishBtn.addEventListener('click', async () => {
    clear(status);
    const n = name.input.value.trim();
    try {
      await api.patch(proj(ctx.project, 'providers', n), { models: picker.value() }, createdEtag ? { 'if-match': createdEtag } : {});
      toast(`Provider ${n} connected`);
      ctx.navigate('#/providers');
    } catch (e) {
      status.append(errorBox(e));
    }
  });
}

async function edit(ctx, root, pname) {
  const r = await call('GET', proj(ctx.project, 'providers', pname));
  const p = r.body;
  const [creds] = await Promise.all([api.get(proj(ctx.project, 'credentials'))]);
  if (!ctx.alive()) return;
  root.append(h('h1', {}, `Provider ${pname}`));
  root.append(h('p', {}, h('a', { href: '#/providers' }, '← All providers')));
  const note = fileNote(p, 'provider');
  if (note) root.append(note);
  const ro = p.managed_by === 'file' || !ctx.canEdit;
  const kind = field('Kind', 'select', { value: p.kind || 'openai', disabled: ro }, KINDS);
  const base = field('Base URL', 'input', { value: p.base_url || '', type: 'url', readonly: ro },
    [], 'Changing the base URL or kind drops the stored credential unless you keep one selected below.');
  const cred = field('Credential', 'select', { value: (p.credential || '').replace(/^credential::/, ''), disabled: ro },
    [['', 'None: callers send their own key'], ...((creds.data || []).map((c) => [c.name, `${c.name} (${c.hint})`]))]);
  if (p.credential && !p.credential.startsWith('credential::')) {
    cred.input.append(h('option', { value: p.credential }, p.credential));
    cred.input.value = p.credential;
  }
  const pass = field('Passthrough', 'select', { value: p.passthrough || 'caller_key', disabled: ro },
    [['caller_key', 'caller_key: callers\' own provider keys'], ['credential', 'credential: serve passthrough with the credential'], ['off', 'off: routes only']]);
  const picker = modelPicker(p.models || [], []);
  const status = h('div', { 'aria-live': 'polite' });
  const form = h('form', {}, kind.wrap, base.wrap, cred.wrap, pass.wrap,
    h('fieldset', {}, h('legend', {}, 'Model allow-list'), picker.el), status);
  root.append(form);
  if (ro) {
    for (const el of form.querySelectorAll('input, select, button')) el.disabled = true;
    if (!ctx.canEdit && p.managed_by !== 'file') root.append(h('p', { class: 'muted' }, 'Viewers see providers read-only.'));
    return;
  }
  const testBtn = h('button', { type: 'button', class: 'secondary' }, 'Test connection');
  const saveBtn = h('button', { type: 'submit' }, 'Save provider');
  form.append(h('div', { class: 'actions' }, saveBtn, testBtn));
  testBtn.addEventListener('click', async () => {
    clear(status);
    try {
      const t = await api.post(proj(ctx.project, 'providers', pname, 'test'));
      if (t.status === 'ok') { status.append(h('p', { class: 'notice' }, `Connected: ${t.models.length} model(s) offered.`)); picker.offer(t.models); } else status.append(h('p', { class: 'notice err' }, `Test: ${t.status}: ${t.message || ''}`));
    } catch (e) { status.append(errorBox(e)); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(status);
    const body = { ...stripMeta(p), kind: kind.input.value, models: picker.value(), passthrough: pass.input.value };
    if (base.input.value.trim()) body.base_url = base.input.value.trim(); else delete body.base_url;
    const c = cred.input.value;
    if (c) body.credential = c.includes('::') ? c : `credential::${c}`; else delete body.credential;
    try {
      await api.put(proj(ctx.project, 'providers', pname), body, { 'if-match': r.headers.get('etag') || `"${p.version}"` });
      toast(`Provider ${pname} saved`);
      ctx.navigate('#/providers');
    } catch (err) {
      status.append(errorBox(err));
    }
  });
}

export function stripMeta(o) {
  const out = { ...o };
  for (const k of ['name', 'object', 'project', 'managed_by', 'version', 'updated_at', 'updated_by']) delete out[k];
  return out;
}

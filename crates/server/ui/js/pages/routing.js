// Routing: routes and functions at a glance; create a rule; edit with a diff preview; history
// with one-click rollback; explain; a calling snippet.

import { api, call, proj } from '../api.js';
import {
  h, field, table, clear, errorBox, toast, confirmDialog, fmtTime, uid, json, copyText, badge,
} from '../dom.js';
import {
  list, fileNote, managedBadge, strategyOf, glance, STRATEGY_NAMES, ENDPOINTS, targetChoices,
  ensureTarget, refName, refWeight, weightsOf,
} from '../catalog.js';
import { stripMeta } from './providers.js';

export async function render(ctx, root, args) {
  if (args[0] === 'new') return createPage(ctx, root);
  if ((args[0] === 'routes' || args[0] === 'functions') && args[1]) return detailPage(ctx, root, args[0], args[1]);
  return listPage(ctx, root);
}

async function listPage(ctx, root) {
  root.append(h('div', { class: 'toolbar' },
    h('h1', {}, 'Routing'),
    ctx.canEdit ? h('div', { class: 'actions' },
      h('a', { class: 'button', href: '#/routing/new' }, 'New rule'),
      h('a', { class: 'button secondary', href: '#/routing/new?kind=functions' }, 'New function')) : null));
  root.append(h('p', { class: 'muted' }, 'Callers use a route as "model": "route::NAME" and a function as "function::NAME". A change serves at once.'));
  const [routes, functions, targets] = await Promise.all([list(ctx.project, 'routes'), list(ctx.project, 'functions'), list(ctx.project, 'targets')]);
  if (!ctx.alive()) return;
  const weights = weightsOf(targets);
  const rows = (items, kind) => items.map((o) => [
    h('span', {}, h('a', { href: `#/routing/${kind}/${encodeURIComponent(o.name)}` }, o.name), ' ', managedBadge(o)),
    o.endpoint || 'chat',
    STRATEGY_NAMES[strategyOf(o)] || strategyOf(o),
    glance(o, weights),
    o.managed_by === 'file' ? 'file' : `v${o.version}`,
  ]);
  const cols = [{ label: 'Name' }, { label: 'Endpoint' }, { label: 'Strategy' }, { label: 'Targets' }, { label: 'Version' }];
  root.append(h('h2', {}, 'Routes'));
  root.append(table(null, cols, rows(routes, 'routes'), 'No routes yet.'));
  root.append(h('h2', {}, 'Functions'));
  root.append(table(null, cols, rows(functions, 'functions'), 'No functions yet.'));
}

async function createPage(ctx, root) {
  const collection = ctx.query.get('kind') === 'functions' ? 'functions' : 'routes';
  root.append(h('h1', {}, collection === 'routes' ? 'New routing rule' : 'New function'));
  root.append(h('p', {}, h('a', { href: '#/routing' }, '← Routing')));
  if (!ctx.canEdit) {
    root.append(h('p', {}, 'Creating rules needs the editor role in this project.'));
    return;
  }
  const { choices, targets } = await targetChoices(ctx.project);
  const routes = collection === 'functions' ? await list(ctx.project, 'routes') : [];
  if (!ctx.alive()) return;
  const name = field(collection === 'routes' ? 'Routing identifier' : 'Function name', 'input',
    { required: true, autocomplete: 'off', pattern: '[A-Za-z0-9._\\-]{1,128}' }, [],
    collection === 'routes' ? 'Callers send "model": "route::NAME".' : 'Callers send "model": "function::NAME".');
  const initial = {};
  const preset = ctx.query.get('strategy');
  if (preset) initial.__strategy = preset;
  const editor = ruleEditor({ collection, body: initial, choices, routes });
  const status = h('div', { 'aria-live': 'polite' });
  const form = h('form', {}, name.wrap, editor.el, status, h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(status);
    try {
      const n = name.input.value.trim();
      if (!n) throw new Error('Give the rule a name');
      const body = await editor.build(ctx.project, targets, {});
      await api.post(proj(ctx.project, collection), { name: n, ...body });
      toast(`${collection === 'routes' ? 'Route' : 'Function'} ${n} created`);
      ctx.navigate(`#/routing/${collection}/${encodeURIComponent(n)}`);
    } catch (err) {
      status.append(errorBox(err));
    }
  });
  root.append(form);
}

async function detailPage(ctx, root, collection, name) {
  const [r, allTargets] = await Promise.all([call('GET', proj(ctx.project, collection, name)), list(ctx.project, 'targets')]);
  const obj = r.body;
  const weights = weightsOf(allTargets);
  const label = collection === 'routes' ? 'Route' : 'Function';
  const prefix = collection === 'routes' ? 'route' : 'function';
  root.append(h('h1', {}, `${label} ${name}`));
  root.append(h('p', {}, h('a', { href: '#/routing' }, '← Routing')));
  const note = fileNote(obj, collection === 'routes' ? 'route' : 'function');
  if (note) root.append(note);
  root.append(h('dl', { class: 'props' },
    h('dt', {}, 'Call it as'), h('dd', {}, h('code', {}, `${prefix}::${name}`)),
    h('dt', {}, 'Endpoint'), h('dd', {}, obj.endpoint || 'chat'),
    h('dt', {}, 'Strategy'), h('dd', {}, STRATEGY_NAMES[strategyOf(obj)] || strategyOf(obj)),
    h('dt', {}, 'Targets'), h('dd', { 'data-testid': 'glance' }, glance(obj, weights)),
    h('dt', {}, 'Version'), h('dd', {}, obj.managed_by === 'file' ? 'config file' : `${obj.version} by ${obj.updated_by} at ${fmtTime(obj.updated_at)}`)));
  if (strategyOf(obj) === 'experiment') {
    root.append(h('p', {}, h('a', { href: `#/experiments/${collection}/${encodeURIComponent(name)}` }, 'See this experiment\'s per-variant figures')));
  }

  // Edit
  if (ctx.canEdit && obj.managed_by !== 'file' && Array.isArray(obj.models) && collection === 'functions') {
    // Inline provider models are not something the editor builds: editing here would drop them.
    root.append(h('p', { class: 'notice' }, 'This function lists its models inline (`models`): edit it through the admin API or export and import it as TOML.'));
  } else if (ctx.canEdit && obj.managed_by !== 'file') {
    const { choices, targets } = await targetChoices(ctx.project);
    const routes = collection === 'functions' ? await list(ctx.project, 'routes') : [];
    if (!ctx.alive()) return;
    const editor = ruleEditor({ collection, body: obj, choices, routes, weights: weightsOf(targets) });
    const status = h('div', { 'aria-live': 'polite' });
    const preview = h('div', {});
    const form = h('form', { class: 'panel', 'aria-labelledby': 'edit-title' },
      h('h2', { id: 'edit-title' }, 'Edit'), editor.el, status, preview,
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Preview changes')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(status);
      clear(preview);
      try {
        const before = stripMeta(obj);
        // The preview creates nothing: a new target is made only when the change is saved.
        const after = await editor.build(ctx.project, targets, before, false);
        const changes = diffOf(before, after);
        if (changes.length === 0) {
          preview.append(h('p', { class: 'notice' }, 'Nothing changed.'));
          return;
        }
        const confirm = h('button', { type: 'button' }, 'Save changes');
        const cancel = h('button', { type: 'button', class: 'secondary' }, 'Discard preview');
        preview.append(h('div', { class: 'panel diff', role: 'region', 'aria-label': 'Changes to save' },
          h('h3', {}, 'Changes to save'),
          diffTable(changes),
          h('div', { class: 'actions' }, confirm, cancel)));
        cancel.addEventListener('click', () => clear(preview));
        confirm.addEventListener('click', async () => {
          confirm.disabled = true;
          try {
            const saved = await editor.build(ctx.project, targets, before, true);
            await api.put(proj(ctx.project, collection, name), saved, { 'if-match': r.headers.get('etag') || `"${obj.version}"` });
            toast(`${label} ${name} saved; it serves now`);
            ctx.reload();
          } catch (err) {
            confirm.disabled = false;
            status.append(errorBox(err));
          }
        });
        confirm.focus();
      } catch (err) {
        status.append(errorBox(err));
      }
    });
    root.append(form);
    const del = h('button', { type: 'button', class: 'danger' }, `Delete ${label.toLowerCase()}`);
    const delMsg = h('div', { 'aria-live': 'polite' });
    del.addEventListener('click', async () => {
      if (!await confirmDialog(`Delete ${prefix}::${name}? Callers using it get 404 from the next request on.`, 'Delete', true)) return;
      try {
        await api.del(proj(ctx.project, collection, name), { 'if-match': r.headers.get('etag') || `"${obj.version}"` });
        toast(`${label} ${name} deleted`);
        ctx.navigate('#/routing');
      } catch (err) {
        clear(delMsg).append(errorBox(err));
      }
    });
    root.append(h('div', { class: 'actions' }, del), delMsg);
  }

  root.append(explainBox(ctx, `${prefix}::${name}`, obj.endpoint || 'chat'));
  root.append(snippetBox(`${prefix}::${name}`, obj.endpoint || 'chat'));
  if (obj.managed_by !== 'file') await historyBox(ctx, root, collection, name);
}

function diffOf(before, after) {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
    .map((k) => ({ field: k, before: before[k], after: after[k] }));
}

function diffTable(changes) {
  return table(null, [{ label: 'Field' }, { label: 'Before' }, { label: 'After' }],
    changes.map((c) => [
      h('code', {}, c.field),
      h('pre', { class: 'before' }, c.before === undefined || c.before === null ? '(none)' : json(c.before)),
      h('pre', { class: 'after' }, c.after === undefined || c.after === null ? '(none)' : json(c.after)),
    ]));
}

async function historyBox(ctx, root, collection, name) {
  const hist = (await api.get(proj(ctx.project, collection, name, 'history'))).data || [];
  if (!ctx.alive()) return;
  const msg = h('div', { 'aria-live': 'polite' });
  const rows = hist.map((v, i) => {
    let action = '—';
    if (i === 0) action = badge('current', 'ok');
    else if (v.deleted) action = h('span', { class: 'muted' }, 'deleted');
    else if (ctx.canEdit) {
      action = h('button', {
        type: 'button', class: 'secondary small', 'aria-label': `Roll back to version ${v.version}`,
        onclick: async () => {
          try {
            await api.post(proj(ctx.project, collection, name, 'rollback'), { version: v.version });
            toast(`Rolled back to version ${v.version}; it serves now`);
            ctx.reload();
          } catch (err) {
            clear(msg).append(errorBox(err));
          }
        },
      }, 'Roll back');
    }
    const changes = (v.diff || []).map((d) => d.field).join(', ') || (v.deleted ? 'deleted' : '—');
    const details = h('details', {}, h('summary', {}, changes), diffTable(v.diff || []));
    return [`v${v.version}`, v.author, fmtTime(v.created_at), details, action];
  });
  root.append(h('h2', {}, 'History'), msg,
    table(null, [{ label: 'Version' }, { label: 'Author' }, { label: 'When' }, { label: 'Changed fields' }, { label: 'Rollback' }], rows));
}

export function explainBox(ctx, model, endpoint) {
  const m = field('Model string', 'input', { value: model, autocomplete: 'off' });
  const ep = field('Endpoint kind', 'select', { value: endpoint }, ENDPOINTS);
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', 'aria-labelledby': 'explain-title' },
    h('h2', { id: 'explain-title' }, 'Explain'),
    h('p', { class: 'hint' }, 'How a model string resolves, and the attempt plan it gets. No provider is called.'),
    h('div', { class: 'row' }, m.wrap, ep.wrap, h('button', { type: 'submit', class: 'secondary' }, 'Explain')), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    try {
      const r = await api.post(proj(ctx.project, 'explain'), { model: m.input.value, endpoint: ep.input.value });
      out.append(explainView(r));
    } catch (err) {
      out.append(errorBox(err));
    }
  });
  return form;
}

function explainView(r) {
  const plan = r.plan || {};
  const items = [];
  const tgt = (t) => `${t.target} → ${t.provider} / ${t.model}${t.weight !== null && t.weight !== undefined ? ` (weight ${t.weight})` : ''}, auth: ${t.auth}`;
  if (Array.isArray(plan.steps)) {
    plan.steps.forEach((s, i) => items.push(h('li', {}, `Step ${i + 1} (${s.strategy}, ${s.retry.max_retries} retries): `, (s.targets || []).map(tgt).join('; '))));
  }
  if (Array.isArray(plan.variants)) {
    plan.variants.forEach((v) => items.push(h('li', {}, `Variant ${v.variant} (weight ${v.weight}): ${tgt(v.target)}`)));
  }
  if (Array.isArray(plan.targets)) plan.targets.forEach((t) => items.push(h('li', {}, tgt(t))));
  return h('div', {},
    h('dl', { class: 'props' },
      h('dt', {}, 'Layer'), h('dd', {}, r.layer),
      h('dt', {}, 'Matched'), h('dd', {}, typeof r.matched === 'string' ? r.matched : json(r.matched)),
      h('dt', {}, 'Matched by'), h('dd', {}, r.matched_by),
      h('dt', {}, 'Shadows'), h('dd', {}, Array.isArray(r.shadowed) && r.shadowed.length ? r.shadowed.map((x) => (typeof x === 'string' ? x : json(x))).join(', ') : 'nothing'),
      h('dt', {}, 'Strategy'), h('dd', {}, plan.strategy || '—')),
    h('ol', {}, items),
    h('details', {}, h('summary', {}, 'Full answer'), h('pre', {}, json(r))));
}

export function snippetBox(model, endpoint) {
  const base = `${location.origin}/v1`;
  const snippets = snippetsFor(base, model, endpoint);
  const tabsId = uid('tabs');
  const panel = h('pre', { role: 'tabpanel', id: `${tabsId}-panel`, tabindex: '0' });
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Snippet language' });
  const names = Object.keys(snippets);
  let current = names[0];
  const select = (n, focus) => {
    current = n;
    panel.textContent = snippets[n];
    for (const b of tabs.children) {
      const on = b.dataset.lang === n;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      if (on) panel.setAttribute('aria-labelledby', b.id);
      if (on && focus) b.focus();
    }
  };
  for (const n of names) {
    tabs.append(h('button', {
      type: 'button', role: 'tab', id: `${tabsId}-${n}`, 'aria-controls': `${tabsId}-panel`, dataset: { lang: n },
      onclick: () => select(n),
      onkeydown: (e) => {
        const i = names.indexOf(current);
        if (e.key === 'ArrowRight') { e.preventDefault(); select(names[(i + 1) % names.length], true); }
        if (e.key === 'ArrowLeft') { e.preventDefault(); select(names[(i + names.length - 1) % names.length], true); }
      },
    }, n));
  }
  select(current);
  const copy = h('button', { type: 'button', class: 'secondary', onclick: () => copyText(snippets[current], panel) }, 'Copy snippet');
  return h('section', { class: 'panel', 'aria-labelledby': `${tabsId}-title` },
    h('h2', { id: `${tabsId}-title` }, 'Call it'),
    h('p', { class: 'hint' }, `Set SIGNALBOX_KEY to a gateway key of this project (API keys page). The address is this dashboard's; use the gateway's if the admin API listens elsewhere.`),
    tabs, panel, copy);
}

function snippetsFor(base, model, endpoint) {
  const calls = {
    chat: ['chat/completions', { model, messages: [{ role: 'user', content: 'Hello!' }] },
      `client.chat.completions.create(model="${model}", messages=[{"role": "user", "content": "Hello!"}])`,
      `client.chat.completions.create({ model: "${model}", messages: [{ role: "user", content: "Hello!" }] })`],
    embeddings: ['embeddings', { model, input: 'Hello!' },
      `client.embeddings.create(model="${model}", input="Hello!")`,
      `client.embeddings.create({ model: "${model}", input: "Hello!" })`],
    image_generation: ['images/generations', { model, prompt: 'A signal box at dusk' },
      `client.images.generate(model="${model}", prompt="A signal box at dusk")`,
      `client.images.generate({ model: "${model}", prompt: "A signal box at dusk" })`],
    audio_speech: ['audio/speech', { model, voice: 'alloy', input: 'Hello!' },
      `client.audio.speech.create(model="${model}", voice="alloy", input="Hello!")`,
      `client.audio.speech.create({ model: "${model}", voice: "alloy", input: "Hello!" })`],
    audio_transcription: ['audio/transcriptions', null,
      `client.audio.transcriptions.create(model="${model}", file=open("speech.mp3", "rb"))`,
      `client.audio.transcriptions.create({ model: "${model}", file: fs.createReadStream("speech.mp3") })`],
  };
  const [path, body, py, js] = calls[endpoint] || calls.chat;
  const curl = body
    ? `curl ${base}/${path} \\\n  -H "Authorization: Bearer $SIGNALBOX_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${JSON.stringify(body)}'`
    : `curl ${base}/${path} \\\n  -H "Authorization: Bearer $SIGNALBOX_KEY" \\\n  -F model=${model} -F file=@speech.mp3`;
  return {
    curl,
    Python: `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${base}", api_key=os.environ["SIGNALBOX_KEY"])\nresult = ${py}\nprint(result)`,
    Node: `import OpenAI from "openai";${endpoint === 'audio_transcription' ? '\nimport fs from "node:fs";' : ''}\n\nconst client = new OpenAI({ baseURL: "${base}", apiKey: process.env.SIGNALBOX_KEY });\nconst result = await ${js};\nconsole.log(result);`,
  };
}

// ---- the rule editor ----

const MANAGED_KEYS = ['strategy', 'targets', 'steps', 'variants', 'sticky', 'route'];

/** Parse a stored body into the editor's state. */
function stateOf(collection, body, weights = {}) {
  const st = body.__strategy || strategyOf(body);
  const refs = (body.targets || []);
  const state = {
    endpoint: body.endpoint || 'chat',
    strategy: st,
    single: refs[0] ? `t:${refName(refs[0])}` : '',
    weighted: [],
    fallback: [],
    variants: [],
    sticky: body.sticky || '',
    steps: [],
    route: body.route || '',
    retries: body.retry && body.retry.max_retries !== undefined ? String(body.retry.max_retries) : '',
    models: (collection === 'routes' ? body.models || [] : []).join(', '),
  };
  if (st === 'weighted') {
    const total = refs.reduce((a, r) => a + refWeight(r, weights), 0) || 1;
    state.weighted = refs.map((r) => ({ value: `t:${refName(r)}`, pct: Math.round((refWeight(r, weights) * 100) / total) }));
    // Left as they were, the stored weights are saved as they were (percentages round).
    state.weightedAsLoaded = { rows: JSON.stringify(state.weighted), refs };
  } else if (refs.length) {
    state.weighted = refs.map((r, i) => ({ value: `t:${refName(r)}`, pct: i === 0 ? 100 : 0 }));
  }
  state.fallback = refs.map((r) => `t:${refName(r)}`);
  for (const [n, v] of Object.entries(body.variants || {})) {
    const { target, model, weight, temperature, max_tokens: maxTokens, ...rest } = v;
    state.variants.push({
      name: n,
      value: target ? `t:${target}` : (model ? `v:${model}` : ''),
      weight: weight ?? 1,
      temperature: temperature ?? '',
      max_tokens: maxTokens ?? '',
      rest,
    });
  }
  state.steps = (body.steps || []).map((s) => ({
    strategy: s.strategy || 'single',
    rows: (s.targets || []).map((r) => ({ value: `t:${refName(r)}`, weight: refWeight(r, weights) })),
    retry: s.retry,
  }));
  if (state.weighted.length === 0) state.weighted = [{ value: '', pct: 50 }, { value: '', pct: 50 }];
  if (state.fallback.length === 0) state.fallback = ['', ''];
  if (state.variants.length === 0) {
    state.variants = [
      { name: 'a', value: '', weight: 50, temperature: '', max_tokens: '', rest: {} },
      { name: 'b', value: '', weight: 50, temperature: '', max_tokens: '', rest: {} },
    ];
  }
  if (state.steps.length === 0) state.steps = [{ strategy: 'weighted', rows: [{ value: '', weight: 1 }] }, { strategy: 'single', rows: [{ value: '', weight: 1 }] }];
  return state;
}

function ruleEditor({ collection, body, choices, routes, weights = {} }) {
  const state = stateOf(collection, body, weights);
  const el = h('div', {});
  const endpoint = field('Endpoint kind', 'select', { value: state.endpoint }, ENDPOINTS,
    'The API this rule serves: a chat rule answers /v1/chat/completions.');
  // Only targets of the rule's endpoint kind are offered; changing the kind redraws them.
  endpoint.input.addEventListener('change', () => { state.endpoint = endpoint.input.value; draw(); });
  const strategies = ['single', 'weighted', 'fallback', 'experiment', 'steps'];
  if (collection === 'functions') strategies.unshift('route');
  const group = uid('strategy');
  const radios = h('div', { class: 'choices' });
  for (const st of strategies) {
    const id = `${group}-${st}`;
    const r = h('input', { type: 'radio', name: group, id, value: st, checked: state.strategy === st });
    r.addEventListener('change', () => { state.strategy = st; draw(); });
    radios.append(h('div', {}, r, h('label', { for: id, class: 'inline' }, STRATEGY_NAMES[st])));
  }
  const strategyBox = h('fieldset', {}, h('legend', {}, 'Strategy'), radios);
  const targetsBox = h('div', {});
  const retries = field('Retries per target (optional)', 'input', { type: 'number', min: 0, max: 10, class: 'num', value: state.retries },
    [], 'Leave empty for the project default ([routing.retry], 2).');
  retries.input.addEventListener('input', () => { state.retries = retries.input.value; });
  const models = field('Also answer these bare model names (optional)', 'input', { value: state.models, autocomplete: 'off' },
    [], 'Comma-separated; a caller sending "model": "gpt-4o" lands here.');
  models.input.addEventListener('input', () => { state.models = models.input.value; });
  if (collection !== 'routes') models.wrap.hidden = true;
  el.append(endpoint.wrap, strategyBox, targetsBox, retries.wrap, models.wrap);

  const sel = (value, label, onchange, extraChoices = []) => {
    const id = uid('t');
    const s = h('select', { id });
    s.append(h('option', { value: '' }, '— choose a target —'));
    const fits = (c) => !c.serves || c.serves === (state.endpoint || 'chat');
    for (const c of [...extraChoices, ...choices.filter(fits)]) s.append(h('option', { value: c.value }, c.label));
    if (value && ![...s.options].some((o) => o.value === value)) s.append(h('option', { value }, value.slice(2)));
    s.value = value || '';
    s.addEventListener('change', () => onchange(s.value));
    return h('div', { class: 'field' }, h('label', { for: id }, label), s);
  };
  const num = (value, label, onchange, attrs = {}) => {
    const id = uid('n');
    const i = h('input', { id, type: 'number', class: 'num', value, ...attrs });
    i.addEventListener('input', () => onchange(i.value));
    return h('div', { class: 'field' }, h('label', { for: id }, label), i);
  };
  const rowButtons = (arr, i, what, redraw) => h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'secondary small', 'aria-label': `Move ${what} ${i + 1} up`, disabled: i === 0, onclick: () => { [arr[i - 1], arr[i]] = [arr[i], arr[i - 1]]; redraw(i - 1, 'up'); } }, 'Up'),
    h('button', { type: 'button', class: 'secondary small', 'aria-label': `Move ${what} ${i + 1} down`, disabled: i === arr.length - 1, onclick: () => { [arr[i + 1], arr[i]] = [arr[i], arr[i + 1]]; redraw(i + 1, 'down'); } }, 'Down'),
    h('button', { type: 'button', class: 'danger small', 'aria-label': `Remove ${what} ${i + 1}`, disabled: arr.length <= 1, onclick: () => { arr.splice(i, 1); redraw(); } }, 'Remove'));

  function draw(focusIndex, dir) {
    clear(targetsBox);
    const st = state.strategy;
    if (st === 'route') {
      const id = uid('r');
      const s = h('select', { id });
      s.append(h('option', { value: '' }, '— choose a route —'));
      for (const r of routes) s.append(h('option', { value: r.name }, `route::${r.name} (${r.endpoint || 'chat'})`));
      s.value = state.route;
      s.addEventListener('change', () => { state.route = s.value; });
      targetsBox.append(h('fieldset', {}, h('legend', {}, 'Route'), h('div', { class: 'field' }, h('label', { for: id }, 'The route this function calls'), s)));
    } else if (st === 'single') {
      targetsBox.append(h('fieldset', {}, h('legend', {}, 'Target'),
        sel(state.single, 'Target', (v) => { state.single = v; }),
        h('p', { class: 'hint' }, 'Pick a target, or a model from a provider\'s allow-list (a target is created for it).')));
    } else if (st === 'weighted') {
      const fs = h('fieldset', {}, h('legend', {}, 'Weighted split'));
      const total = h('p', { class: 'hint', 'aria-live': 'polite' });
      const upd = () => {
        const sum = state.weighted.reduce((a, w) => a + (Number(w.pct) || 0), 0);
        total.textContent = `Total: ${sum}%${sum === 100 ? '' : ' (shares are relative weights; 100% reads best)'}`;
      };
      state.weighted.forEach((w, i) => {
        fs.append(h('div', { class: 'row' },
          sel(w.value, `Weighted target ${i + 1}`, (v) => { w.value = v; }),
          num(w.pct, `Share of target ${i + 1} (%)`, (v) => { w.pct = v; upd(); }, { min: 0, max: 100 }),
          h('button', { type: 'button', class: 'danger small', 'aria-label': `Remove target ${i + 1}`, disabled: state.weighted.length <= 1, onclick: () => { state.weighted.splice(i, 1); draw(); } }, 'Remove')));
      });
      upd();
      fs.append(total, h('button', { type: 'button', class: 'secondary', onclick: () => { state.weighted.push({ value: '', pct: 0 }); draw(); } }, 'Add target'));
      targetsBox.append(fs);
    } else if (st === 'fallback') {
      const fs = h('fieldset', {}, h('legend', {}, 'Fallback chain'),
        h('p', { class: 'hint' }, 'Tried in this order: drag a row by its handle, or use Up and Down.'));
      const ul = h('ul', { class: 'order' });
      let dragFrom = null;
      state.fallback.forEach((v, i) => {
        const li = h('li', { draggable: 'true', dataset: { index: i } },
          h('span', { class: 'handle', 'aria-hidden': 'true', title: 'Drag to reorder' }, '⠿'),
          h('span', { class: 'pos' }, `${i + 1}.`),
          sel(v, `Fallback target ${i + 1}`, (nv) => { state.fallback[i] = nv; }),
          rowButtons(state.fallback, i, 'target', (fi, d) => draw(fi, d)));
        li.addEventListener('dragstart', (e) => { dragFrom = i; li.classList.add('dragging'); e.dataTransfer.effectAllowed = 'move'; e.dataTransfer.setData('text/plain', String(i)); });
        li.addEventListener('dragend', () => li.classList.remove('dragging'));
        li.addEventListener('dragover', (e) => { e.preventDefault(); li.classList.add('over'); });
        li.addEventListener('dragleave', () => li.classList.remove('over'));
        li.addEventListener('drop', (e) => {
          e.preventDefault();
          const from = dragFrom ?? Number(e.dataTransfer.getData('text/plain'));
          if (Number.isInteger(from) && from !== i) {
            const [moved] = state.fallback.splice(from, 1);
            state.fallback.splice(i, 0, moved);
            draw();
            toast(`Moved to position ${i + 1}`);
          }
        });
        ul.append(li);
      });
      fs.append(ul, h('button', { type: 'button', class: 'secondary', onclick: () => { state.fallback.push(''); draw(); } }, 'Add target'));
      targetsBox.append(fs);
    } else if (st === 'experiment') {
      const fs = h('fieldset', {}, h('legend', {}, 'A/B experiment'));
      const stickyId = uid('sticky');
      const sticky = h('select', { id: stickyId });
      for (const [v, t] of [['', 'No: a fresh draw per request'], ['user', 'Per user (x-signalbox-user-id)'], ['session', 'Per session (x-signalbox-session-id)']]) sticky.append(h('option', { value: v }, t));
      sticky.value = state.sticky;
      sticky.addEventListener('change', () => { state.sticky = sticky.value; });
      fs.append(h('div', { class: 'field' }, h('label', { for: stickyId }, 'Sticky assignment'), sticky));
      const modelChoices = [];
      state.variants.forEach((v, i) => {
        if (v.value.startsWith('v:')) modelChoices.push({ value: v.value, label: `model ${v.value.slice(2)}` });
      });
      state.variants.forEach((v, i) => {
        const nameId = uid('vn');
        const nm = h('input', { id: nameId, value: v.name, autocomplete: 'off', pattern: '[A-Za-z0-9._\\-]{1,128}' });
        nm.addEventListener('input', () => { v.name = nm.value; });
        const restId = uid('vp');
        const rest = h('input', { id: restId, value: Object.keys(v.rest || {}).length ? JSON.stringify(v.rest) : '', autocomplete: 'off', placeholder: '{"seed": 7}' });
        rest.addEventListener('input', () => { v.restText = rest.value; });
        fs.append(h('div', { class: 'panel' },
          h('div', { class: 'row' },
            h('div', { class: 'field' }, h('label', { for: nameId }, `Variant ${i + 1} name`), nm),
            sel(v.value, `Variant ${i + 1} target`, (nv) => { v.value = nv; }, modelChoices),
            num(v.weight, `Variant ${i + 1} weight`, (nv) => { v.weight = nv; }, { min: 0 })),
          h('div', { class: 'row' },
            num(v.temperature, `Variant ${i + 1} temperature`, (nv) => { v.temperature = nv; }, { step: '0.1', min: 0, max: 2 }),
            num(v.max_tokens, `Variant ${i + 1} max_tokens`, (nv) => { v.max_tokens = nv; }, { min: 1 }),
            h('div', { class: 'field' }, h('label', { for: restId }, `Variant ${i + 1} other params (JSON)`), rest),
            h('button', { type: 'button', class: 'danger small', 'aria-label': `Remove variant ${i + 1}`, disabled: state.variants.length <= 1, onclick: () => { state.variants.splice(i, 1); draw(); } }, 'Remove'))));
      });
      fs.append(h('button', {
        type: 'button', class: 'secondary',
        onclick: () => { state.variants.push({ name: String.fromCharCode(97 + state.variants.length), value: '', weight: 50, temperature: '', max_tokens: '', rest: {} }); draw(); },
      }, 'Add variant'));
      targetsBox.append(fs);
    } else if (st === 'steps') {
      const fs = h('fieldset', {}, h('legend', {}, 'Steps'),
        h('p', { class: 'hint' }, 'Each step has its own strategy; a step that fails as a whole hands over to the next.'));
      state.steps.forEach((stp, si) => {
        const sid = uid('ss');
        const ssel = h('select', { id: sid });
        for (const v of ['single', 'weighted', 'fallback']) ssel.append(h('option', { value: v }, STRATEGY_NAMES[v]));
        ssel.value = stp.strategy;
        ssel.addEventListener('change', () => { stp.strategy = ssel.value; draw(); });
        const box = h('div', { class: 'panel' },
          h('h3', {}, `Step ${si + 1}`),
          h('div', { class: 'row' }, h('div', { class: 'field' }, h('label', { for: sid }, `Step ${si + 1} strategy`), ssel),
            rowButtons(state.steps, si, 'step', (fi, d) => draw(fi, d))));
        stp.rows.forEach((r, ri) => {
          box.append(h('div', { class: 'row' },
            sel(r.value, `Step ${si + 1} target ${ri + 1}`, (v) => { r.value = v; }),
            stp.strategy === 'weighted' ? num(r.weight, `Step ${si + 1} weight ${ri + 1}`, (v) => { r.weight = v; }, { min: 0 }) : null,
            h('button', { type: 'button', class: 'danger small', 'aria-label': `Remove step ${si + 1} target ${ri + 1}`, disabled: stp.rows.length <= 1, onclick: () => { stp.rows.splice(ri, 1); draw(); } }, 'Remove')));
        });
        box.append(h('button', { type: 'button', class: 'secondary small', onclick: () => { stp.rows.push({ value: '', weight: 1 }); draw(); } }, `Add target to step ${si + 1}`));
        fs.append(box);
      });
      fs.append(h('button', { type: 'button', class: 'secondary', onclick: () => { state.steps.push({ strategy: 'single', rows: [{ value: '', weight: 1 }] }); draw(); } }, 'Add step'));
      targetsBox.append(fs);
    }
    if (focusIndex !== undefined && dir) {
      // Keep keyboard focus on the moved row's button, and say where it went.
      const btn = targetsBox.querySelector(`[aria-label="Move ${st === 'steps' ? 'step' : 'target'} ${focusIndex + 1} ${dir}"]`)
        || targetsBox.querySelector(`[aria-label^="Move ${st === 'steps' ? 'step' : 'target'} ${focusIndex + 1}"]:not([disabled])`);
      if (btn) btn.focus();
      toast(`Moved to position ${focusIndex + 1}`);
    }
  }
  draw();

  async function build(project, targets, original, create = true) {
    const need = (v, what) => {
      if (!v) throw new Error(`Choose ${what}`);
      return ensureTarget(project, v, targets, create);
    };
    const out = { ...original };
    for (const k of MANAGED_KEYS) delete out[k];
    // `chat` is the default: a body that left it out keeps leaving it out.
    if (original.endpoint !== undefined || state.endpoint !== 'chat') out.endpoint = state.endpoint;
    if (collection === 'routes') {
      const ms = state.models.split(',').map((x) => x.trim()).filter(Boolean);
      if (ms.length) out.models = ms; else delete out.models;
    }
    const retry = { ...(original.retry || {}) };
    if (state.retries !== '') retry.max_retries = Number(state.retries); else delete retry.max_retries;
    if (Object.keys(retry).length) out.retry = retry; else delete out.retry;
    switch (state.strategy) {
      case 'route':
        if (!state.route) throw new Error('Choose the route this function calls');
        out.route = state.route;
        break;
      case 'single':
        out.strategy = 'single';
        out.targets = [await need(state.single, 'a target')];
        break;
      case 'weighted': {
        out.strategy = 'weighted';
        const loaded = state.weightedAsLoaded;
        if (loaded && loaded.rows === JSON.stringify(state.weighted)) {
          out.targets = loaded.refs;
          break;
        }
        out.targets = [];
        for (const [i, w] of state.weighted.entries()) {
          out.targets.push({ target: await need(w.value, `weighted target ${i + 1}`), weight: Number(w.pct) || 0 });
        }
        break;
      }
      case 'fallback':
        out.strategy = 'fallback';
        out.targets = [];
        for (const [i, v] of state.fallback.entries()) out.targets.push(await need(v, `fallback target ${i + 1}`));
        break;
      case 'experiment': {
        out.strategy = 'experiment';
        if (state.sticky) out.sticky = state.sticky;
        out.variants = {};
        for (const [i, v] of state.variants.entries()) {
          if (!v.name) throw new Error(`Name variant ${i + 1}`);
          let rest = v.rest || {};
          if (v.restText !== undefined) {
            try { rest = v.restText.trim() ? JSON.parse(v.restText) : {}; } catch { throw new Error(`Variant ${v.name}: other params must be a JSON object`); }
          }
          const vb = { ...rest };
          if (v.value.startsWith('v:')) vb.model = v.value.slice(2);
          else vb.target = await need(v.value, `a target for variant ${v.name}`);
          vb.weight = Number(v.weight) || 0;
          if (v.temperature !== '' && v.temperature !== null) vb.temperature = Number(v.temperature);
          if (v.max_tokens !== '' && v.max_tokens !== null) vb.max_tokens = Number(v.max_tokens);
          out.variants[v.name] = vb;
        }
        break;
      }
      case 'steps': {
        out.strategy = 'fallback';
        out.steps = [];
        for (const [si, stp] of state.steps.entries()) {
          const ts = [];
          for (const [ri, r] of stp.rows.entries()) {
            const t = await need(r.value, `step ${si + 1} target ${ri + 1}`);
            ts.push(stp.strategy === 'weighted' ? { target: t, weight: Number(r.weight) || 0 } : t);
          }
          const step = { strategy: stp.strategy, targets: ts };
          if (stp.retry) step.retry = stp.retry;
          out.steps.push(step);
        }
        break;
      }
      default:
        throw new Error('Choose a strategy');
    }
    return out;
  }
  return { el, build };
}

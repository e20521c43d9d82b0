// Traces: the explorer (the query API's filters, newest first, cursor pages) and one trace.

import { api, proj, qs } from '../api.js';
import {
  h, field, table, clear, fmtTime, fmtMs, fmtNum, fmtCost, badge, json,
} from '../dom.js';
import { attemptTimeline } from '../charts.js';

const FILTERS = ['from', 'to', 'status', 'endpoint', 'route', 'variant', 'provider', 'model', 'key', 'user', 'session', 'min_tokens', 'max_tokens'];

export async function render(ctx, root, args) {
  if (args[0]) return detail(ctx, root, args[0]);
  return explorer(ctx, root);
}

function statusBadge(t) {
  const bad = t.status >= 400 || t.error_code;
  return badge(`${t.status}${t.error_code ? ` ${t.error_code}` : ''}`, bad ? 'err' : 'ok');
}

function toLocalInput(v) {
  // datetime-local values are read and written as UTC here.
  if (!v) return '';
  const d = new Date(/^\d+$/.test(v) ? Number(v) : v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().slice(0, 16);
}

async function explorer(ctx, root) {
  const q = ctx.query;
  root.append(h('h1', {}, 'Traces'));
  const f = {};
  const mk = (name, label, kind = 'input', attrs = {}, options = []) => {
    f[name] = field(label, kind, { name, value: q.get(name) || '', autocomplete: 'off', ...attrs }, options);
    return f[name].wrap;
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter traces' },
    mk('from', 'From (UTC)', 'input', { type: 'datetime-local', value: toLocalInput(q.get('from')) }),
    mk('to', 'To (UTC)', 'input', { type: 'datetime-local', value: toLocalInput(q.get('to')) }),
    mk('status', 'Status', 'select', {}, [['', 'Any'], ['ok', 'OK'], ['error', 'Error'], ['2xx', '2xx'], ['4xx', '4xx'], ['5xx', '5xx'], ['429', '429']]),
    mk('endpoint', 'Endpoint', 'select', {}, [['', 'Any'], 'chat', 'embeddings', 'audio_speech', 'audio_transcription', 'image_generation']),
    mk('route', 'Route', 'input', { placeholder: 'summarize or route:summarize' }),
    mk('variant', 'Variant'),
    mk('provider', 'Provider'),
    mk('model', 'Model'),
    mk('key', 'Key id'),
    mk('user', 'User id'),
    mk('session', 'Session id'),
    mk('min_tokens', 'Min tokens', 'input', { type: 'number', min: 0, class: 'num' }),
    mk('max_tokens', 'Max tokens', 'input', { type: 'number', min: 0, class: 'num' }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply filters'),
      h('a', { class: 'button secondary', href: '#/traces' }, 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const k of FILTERS) {
      let v = f[k].input.value.trim();
      if (v && (k === 'from' || k === 'to')) v = `${v}:00Z`;
      if (v) p.set(k, v);
    }
    ctx.navigate(`#/traces${p.toString() ? `?${p}` : ''}`);
  });
  root.append(form);

  const params = {};
  for (const k of FILTERS) if (q.get(k)) params[k] = q.get(k);
  const cursor = q.get('cursor') || '';
  const limit = 25;
  const page = await api.get(`${proj(ctx.project, 'traces')}${qs({ ...params, limit, cursor })}`);
  if (!ctx.alive()) return;
  const rows = (page.data || []).map((t) => [
    h('a', { href: `#/traces/${encodeURIComponent(t.id)}`, title: `Trace ${t.id}` }, fmtTime(t.time)),
    t.route || '—',
    t.requested_model || '—',
    t.provider ? `${t.provider} / ${t.model}` : '—',
    t.serving_variant || t.assigned_variant || '—',
    statusBadge(t),
    fmtMs(t.latency_ms),
    fmtNum((t.input_tokens || 0) + (t.output_tokens || 0)),
    fmtCost(t.cost_usd),
    String(t.attempt_count),
  ]);
  const refresh = h('button', { type: 'button', class: 'secondary', onclick: () => ctx.reload() }, 'Refresh');
  root.append(h('div', { class: 'toolbar' }, h('p', { class: 'muted', 'aria-live': 'polite' },
    `${rows.length} trace(s) on this page, newest first.`), refresh));
  root.append(table(null, [
    { label: 'Time' }, { label: 'Route' }, { label: 'Requested model' }, { label: 'Served by' }, { label: 'Variant' },
    { label: 'Status' }, { label: 'Latency', num: true }, { label: 'Tokens', num: true }, { label: 'Cost', num: true }, { label: 'Attempts', num: true },
  ], rows, 'No traces match.'));
  const nav = h('nav', { class: 'actions', 'aria-label': 'Pages' });
  const base = new URLSearchParams(params);
  if (cursor) {
    nav.append(h('a', { class: 'button secondary', href: `#/traces${base.toString() ? `?${base}` : ''}` }, 'Newest'));
  }
  if (page.next_cursor) {
    const next = new URLSearchParams(params);
    next.set('cursor', page.next_cursor);
    nav.append(h('a', { class: 'button secondary', href: `#/traces?${next}` }, 'Older traces'));
  }
  root.append(nav);
}

async function detail(ctx, root, id) {
  const t = await api.get(proj(ctx.project, 'traces', id));
  if (!ctx.alive()) return;
  root.append(h('h1', {}, 'Trace'));
  root.append(h('p', {}, h('a', { href: '#/traces' }, '← All traces')));
  const dl = (pairs) => h('dl', { class: 'props' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
  root.append(dl([
    ['Id (x-request-id)', h('code', {}, t.id)],
    ['Time', fmtTime(t.time)],
    ['Status', statusBadge(t)],
    ['Endpoint', t.endpoint],
    ['Requested model', t.requested_model],
    ['Resolved', `${t.layer || '—'}: ${t.route || '—'}${t.route_version ? ` (version ${t.route_version})` : ''}`],
    ['Served by', t.provider ? `${t.provider} / ${t.model} (target ${t.target})` : 'no upstream attempt'],
    ['Variant', t.assigned_variant ? `assigned ${t.assigned_variant}, served by ${t.serving_variant || 'none'}${t.sticky_source ? ` (sticky: ${t.sticky_source})` : ''}` : '—'],
    ['Latency', fmtMs(t.latency_ms)],
    ['Time to first token', fmtMs(t.ttft_ms)],
    ['Stream', t.stream ? 'yes' : 'no'],
    ['Key', t.key_id],
    ['User / session', `${t.user_id || '—'} / ${t.session_id || '—'}`],
    ['Client request id', t.client_request_id],
    ['W3C trace id', t.trace_id],
  ]));
  root.append(h('h2', {}, 'Tokens and cost'));
  root.append(dl([
    ['Input tokens', fmtNum(t.input_tokens)],
    ['Output tokens', fmtNum(t.output_tokens)],
    ['Cached input tokens', fmtNum(t.cached_tokens)],
    ['Reasoning tokens', fmtNum(t.reasoning_tokens)],
    ['Cost', t.cost_usd === null ? 'unknown (no price for this model, or no usage)' : fmtCost(t.cost_usd)],
  ]));
  root.append(h('h2', {}, 'Attempts'));
  root.append(attemptTimeline(t));
  root.append(table(null, [
    { label: '#' }, { label: 'Target' }, { label: 'Provider / model' }, { label: 'Status' }, { label: 'Error' },
    { label: 'Retry' }, { label: 'Latency', num: true },
  ], (t.attempts || []).map((a, i) => [
    String(i + 1), a.target, `${a.provider} / ${a.model}`, a.status === null ? 'none' : String(a.status),
    a.error_code || '—', `${a.retry}${a.degraded ? ' (degraded mode)' : ''}`, fmtMs(a.latency_ms),
  ]), 'No upstream attempt: the request was answered by the gateway.'));
  root.append(h('h2', {}, 'Response headers'));
  const headers = [
    ['x-request-id', t.id],
    ['x-signalbox-route', t.route],
    ['x-signalbox-provider', t.provider],
    ['x-signalbox-model', t.model],
    ['x-signalbox-attempts', String(t.attempt_count)],
    ['x-signalbox-variant', t.serving_variant],
    ['x-signalbox-error-code', t.error_code],
  ].filter(([, v]) => v !== null && v !== undefined);
  root.append(h('p', { class: 'hint' }, 'The gateway headers this answer carried, as the trace records them (x-signalbox-model names the model sent upstream).'));
  root.append(table(null, [{ label: 'Header' }, { label: 'Value' }], headers.map(([k, v]) => [h('code', {}, k), h('code', {}, v)])));
  if (t.params) {
    root.append(h('h2', {}, 'Variant params'), h('pre', {}, json(t.params)));
  }
  root.append(h('h2', {}, 'Content'));
  if (t.content) {
    // Captured text is shown as text, never as HTML.
    root.append(
      h('h3', {}, `Request${t.content.request_truncated ? ' (cut at 32 KiB)' : ''}`), h('pre', { 'data-testid': 'content-request', tabindex: '0' }, t.content.request || '(empty)'),
      h('h3', {}, `Response${t.content.response_truncated ? ' (cut at 32 KiB)' : ''}`), h('pre', { 'data-testid': 'content-response', tabindex: '0' }, t.content.response || '(empty)'));
  } else {
    root.append(h('p', { class: 'muted' }, 'Not captured: content capture is off for this project (Settings), or the trace is older than the switch.'));
  }
}

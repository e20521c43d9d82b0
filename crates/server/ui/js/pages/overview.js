// Overview: requests, errors, latency and cost over time, from the trace aggregate API.

import { api, proj, qs } from '../api.js';
import { h, field, table, fmtNum, fmtMs, fmtCost, fmtPct } from '../dom.js';
import { lineChart, buckets } from '../charts.js';

export async function render(ctx, root) {
  const range = ctx.query.get('range') || '24h';
  root.append(h('h1', {}, 'Overview'));
  const sel = field('Time range', 'select', { value: range },
    [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days']]);
  sel.input.addEventListener('change', () => ctx.navigate(`#/overview?range=${sel.input.value}`));
  root.append(h('div', { class: 'toolbar' }, sel.wrap));
  const body = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading figures…'));
  root.append(body);

  const bs = buckets(range);
  const from = bs[0].from;
  const to = bs[bs.length - 1].to;
  const base = proj(ctx.project, 'traces', 'aggregate');
  const [total, byRoute, perBucket] = await Promise.all([
    api.get(`${base}${qs({ from, to })}`),
    api.get(`${base}${qs({ from, to, by: 'route' })}`),
    Promise.all(bs.map((b) => api.get(`${base}${qs({ from: b.from, to: b.to })}`))),
  ]);
  if (!ctx.alive()) return;
  body.replaceChildren();
  body.setAttribute('aria-busy', 'false');
  const t = (total.data || [])[0] || {};
  body.append(h('div', { class: 'cards' },
    card('Requests', fmtNum(t.requests || 0)),
    card('Errors', `${fmtNum(t.errors || 0)} (${fmtPct(t.error_rate || 0)})`),
    card('Latency p50', fmtMs(t.latency_ms_p50)),
    card('Latency p95', fmtMs(t.latency_ms_p95)),
    card('Cost', fmtCost(t.cost_usd)),
    card('Tokens in / out', `${fmtNum(t.input_tokens || 0)} / ${fmtNum(t.output_tokens || 0)}`)));

  const labels = bs.map((b) => new Date(b.from));
  const fig = (bucket, key) => ((bucket.data || [])[0] || {})[key] ?? null;
  body.append(h('div', { class: 'charts' },
    lineChart({
      title: 'Requests and errors',
      labels,
      series: [
        { name: 'requests', values: perBucket.map((b) => fig(b, 'requests') || 0) },
        { name: 'errors', values: perBucket.map((b) => fig(b, 'errors') || 0) },
      ],
      format: (n) => fmtNum(n),
    }),
    lineChart({
      title: 'Latency',
      labels,
      series: [
        { name: 'p50', values: perBucket.map((b) => fig(b, 'latency_ms_p50')) },
        { name: 'p95', values: perBucket.map((b) => fig(b, 'latency_ms_p95')) },
      ],
      format: fmtMs,
    }),
    lineChart({
      title: 'Cost (USD)',
      labels,
      series: [{ name: 'cost', values: perBucket.map((b) => fig(b, 'cost_usd')) }],
      format: (n) => fmtCost(n),
    })));

  body.append(h('h2', {}, 'By route'));
  body.append(table(null, [
    { label: 'Route' }, { label: 'Requests', num: true }, { label: 'Error rate', num: true },
    { label: 'p50', num: true }, { label: 'p95', num: true }, { label: 'Cost', num: true },
  ], (byRoute.data || []).map((g) => [
    g.group || '(unresolved)', fmtNum(g.requests), fmtPct(g.error_rate), fmtMs(g.latency_ms_p50),
    fmtMs(g.latency_ms_p95), fmtCost(g.cost_usd),
  ]), 'No traffic in this range.'));
}

function card(k, v) {
  return h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v));
}

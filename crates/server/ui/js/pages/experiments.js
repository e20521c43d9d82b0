// Experiments: per-variant figures (the experiment view of the API) as a table and charts,
// over a chosen time range.

import { api, proj, qs } from '../api.js';
import { h, field, table, fmtNum, fmtMs, fmtCost, fmtPct } from '../dom.js';
import { list, strategyOf, glance } from '../catalog.js';
import { barChart, lineChart, buckets } from '../charts.js';

export async function render(ctx, root, args) {
  root.append(h('div', { class: 'toolbar' },
    h('h1', {}, 'Experiments'),
    ctx.canEdit ? h('a', { class: 'button', href: '#/routing/new?strategy=experiment' }, 'New experiment') : null));
  const [routes, functions] = await Promise.all([list(ctx.project, 'routes'), list(ctx.project, 'functions')]);
  if (!ctx.alive()) return;
  const exps = [
    ...routes.filter((r) => strategyOf(r) === 'experiment').map((r) => ({ kind: 'routes', o: r })),
    ...functions.filter((r) => strategyOf(r) === 'experiment').map((r) => ({ kind: 'functions', o: r })),
  ];
  if (exps.length === 0) {
    root.append(h('p', {}, 'No A/B experiments yet. Create a routing rule with the A/B experiment strategy.'));
    return;
  }
  const chosen = args[0] && args[1] ? `${args[0]}/${args[1]}` : `${exps[0].kind}/${exps[0].o.name}`;
  const range = ctx.query.get('range') || '24h';
  const which = field('Experiment', 'select', { value: chosen },
    exps.map((e) => [`${e.kind}/${e.o.name}`, `${e.kind === 'routes' ? 'route' : 'function'}::${e.o.name}`]));
  const when = field('Time range', 'select', { value: range },
    [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days']]);
  const go = () => ctx.navigate(`#/experiments/${which.input.value.split('/').map(encodeURIComponent).join('/')}?range=${when.input.value}`);
  which.input.addEventListener('change', go);
  when.input.addEventListener('change', go);
  root.append(h('div', { class: 'row' }, which.wrap, when.wrap));

  const [kind, name] = chosen.split('/');
  const exp = exps.find((e) => e.kind === kind && e.o.name === name);
  const bs = buckets(range);
  const from = bs[0].from;
  const to = bs[bs.length - 1].to;
  const label = `${kind === 'routes' ? 'route' : 'function'}:${name}`;
  const [view, perBucket] = await Promise.all([
    api.get(`${proj(ctx.project, kind, name, 'experiment')}${qs({ from, to })}`),
    Promise.all(bs.map((b) => api.get(`${proj(ctx.project, 'traces', 'aggregate')}${qs({ from: b.from, to: b.to, by: 'variant', route: label })}`))),
  ]);
  if (!ctx.alive()) return;
  root.append(h('p', {}, `Variants: ${exp ? glance(exp.o) : ''}. Sticky: ${view.sticky || 'no'}. `,
    h('a', { href: `#/routing/${kind}/${encodeURIComponent(name)}` }, ctx.canEdit ? 'Edit the experiment' : 'See the rule')));
  const vs = view.variants || [];
  const f = (v, k) => (v.figures ? v.figures[k] : null);
  root.append(table('Per-variant figures', [
    { label: 'Variant' }, { label: 'Weight (share)', num: true }, { label: 'Requests', num: true },
    { label: 'Error rate', num: true }, { label: 'Latency p50', num: true }, { label: 'Latency p95', num: true },
    { label: 'TTFT p50', num: true }, { label: 'Tokens in / out', num: true }, { label: 'Cost', num: true },
  ], vs.map((v) => [
    v.variant,
    `${v.weight} (${fmtPct(v.share)})`,
    fmtNum(f(v, 'requests') || 0),
    fmtPct(f(v, 'error_rate')),
    fmtMs(f(v, 'latency_ms_p50')),
    fmtMs(f(v, 'latency_ms_p95')),
    fmtMs(f(v, 'ttft_ms_p50')),
    `${fmtNum(f(v, 'input_tokens') || 0)} / ${fmtNum(f(v, 'output_tokens') || 0)}`,
    fmtCost(f(v, 'cost_usd')),
  ])));
  const labels = bs.map((b) => new Date(b.from));
  const series = (key) => vs.map((v) => ({
    name: v.variant,
    values: perBucket.map((b) => {
      const g = (b.data || []).find((x) => x.group === v.variant);
      return g ? g[key] : (key === 'requests' ? 0 : null);
    }),
  }));
  root.append(h('div', { class: 'charts' },
    barChart({ title: 'Requests per variant', items: vs.map((v) => ({ label: v.variant, value: f(v, 'requests') || 0 })), format: (n) => fmtNum(n) }),
    // An unknown figure (no latency yet, no price) stays unknown: no bar, labelled '—'.
    barChart({ title: 'Latency p95 per variant', items: vs.map((v) => ({ label: v.variant, value: f(v, 'latency_ms_p95') ?? null })), format: fmtMs }),
    barChart({ title: 'Error rate per variant', items: vs.map((v) => ({ label: v.variant, value: f(v, 'error_rate') ?? null })), format: fmtPct }),
    barChart({ title: 'Cost per variant', items: vs.map((v) => ({ label: v.variant, value: f(v, 'cost_usd') ?? null })), format: fmtCost }),
    lineChart({ title: 'Requests over time', labels, series: series('requests'), format: (n) => fmtNum(n) }),
    lineChart({ title: 'Latency p50 over time', labels, series: series('latency_ms_p50'), format: fmtMs })));
}

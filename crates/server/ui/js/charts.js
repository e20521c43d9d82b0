// Small inline-SVG charts: no library, nothing from the network. Each chart is an <svg
// role="img"> with a text summary in its aria-label, and a legend in HTML beside it.

import { h, s, uid } from './dom.js';

export const COLORS = ['#1d4ed8', '#c2410c', '#047857', '#7c3aed', '#be185d', '#374151'];

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

function legend(names) {
  return h('div', { class: 'legend' }, names.map((n, i) =>
    h('span', {}, h('span', { class: `swatch s${i % COLORS.length}`, 'aria-hidden': 'true' }), n)));
}

/**
 * A line chart over time buckets.
 * opts: {title, labels: [Date], series: [{name, values: [number|null]}], format: (n) => string}
 */
export function lineChart(opts) {
  const W = 420; const H = 180; const L = 62; const R = 10; const T = 10; const B = 28;
  const fmt = opts.format || ((n) => String(n));
  const all = opts.series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
  const max = niceMax(Math.max(0, ...all));
  const n = opts.labels.length;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const summary = opts.series.map((se) => {
    const vals = se.values.filter((v) => v !== null && v !== undefined);
    const total = vals.reduce((a, b) => a + b, 0);
    return `${se.name}: ${vals.length ? `max ${fmt(Math.max(...vals))}, sum ${fmt(total)}` : 'no data'}`;
  }).join('; ');
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${opts.title}. ${summary}` });
  for (const frac of [0, 0.5, 1]) {
    const yy = y(max * frac);
    svg.append(s('line', { x1: L, x2: W - R, y1: yy, y2: yy, stroke: '#d1d5db', 'stroke-width': 1 }));
    svg.append(s('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end' }, fmt(max * frac)));
  }
  const tickEvery = Math.max(1, Math.ceil(n / 6));
  opts.labels.forEach((d, i) => {
    const last = i === n - 1;
    if (!last && (i % tickEvery !== 0 || n - 1 - i < tickEvery)) return;
    const t = d instanceof Date ? d : new Date(d);
    const span = n > 1 ? (opts.labels[n - 1] - opts.labels[0]) : 0;
    const text = span > 2 * 86400e3
      ? `${t.getUTCMonth() + 1}/${t.getUTCDate()} ${String(t.getUTCHours()).padStart(2, '0')}h`
      : `${String(t.getUTCHours()).padStart(2, '0')}:${String(t.getUTCMinutes()).padStart(2, '0')}`;
    const anchor = i === 0 ? 'start' : (i === n - 1 ? 'end' : 'middle');
    svg.append(s('text', { x: x(i), y: H - 8, 'text-anchor': anchor }, text));
  });
  opts.series.forEach((se, si) => {
    const color = COLORS[si % COLORS.length];
    let d = '';
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += `${d ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (d) svg.append(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 2 }));
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      svg.append(s('circle', { cx: x(i), cy: y(v), r: 2.5, fill: color },
        s('title', {}, `${se.name}: ${fmt(v)}`)));
    });
  });
  return h('figure', {}, h('figcaption', {}, opts.title), svg, legend(opts.series.map((x) => x.name)));
}

/**
 * Horizontal bars, one per item. opts: {title, items: [{label, value}], format}
 */
export function barChart(opts) {
  const fmt = opts.format || ((n) => String(n));
  const rowH = 24; const L = 70; const W = 300; const R = 70;
  const H = Math.max(1, opts.items.length) * rowH + 8;
  const max = niceMax(Math.max(0, ...opts.items.map((i) => i.value || 0)));
  const summary = opts.items.map((i) => `${i.label}: ${fmt(i.value)}`).join('; ');
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${opts.title}. ${summary || 'no data'}` });
  opts.items.forEach((it, i) => {
    const yy = 4 + i * rowH;
    const w = it.value ? ((W - L - R) * it.value) / max : 0;
    svg.append(s('text', { x: L - 6, y: yy + 16, 'text-anchor': 'end' }, it.label));
    svg.append(s('rect', { x: L, y: yy + 4, width: Math.max(w, 0.5), height: rowH - 10, fill: COLORS[i % COLORS.length] }));
    svg.append(s('text', { x: L + w + 4, y: yy + 16 }, fmt(it.value)));
  });
  return h('figure', {}, h('figcaption', {}, opts.title), svg);
}

/**
 * The attempts of one trace on a time axis, each where it ran (`started_ms` after the request
 * arrived). Traces stored before attempts recorded their start spread the time between attempts
 * evenly instead.
 */
export function attemptTimeline(trace) {
  const attempts = Array.isArray(trace.attempts) ? trace.attempts : [];
  const timed = attempts.every((a) => typeof a.started_ms === 'number');
  const ends = attempts.map((a) => (timed ? a.started_ms : 0) + (a.latency_ms || 0));
  const total = Math.max(trace.latency_ms || 0, attempts.reduce((a, t) => a + (t.latency_ms || 0), 0), ...ends, 1);
  const busy = attempts.reduce((a, t) => a + (t.latency_ms || 0), 0);
  const gap = attempts.length > 1 ? Math.max(0, total - busy) / attempts.length : 0;
  const W = 640; const L = 150; const R = 20; const rowH = 28; const T = 8;
  const H = T + Math.max(1, attempts.length) * rowH + 30;
  const x = (ms) => L + ((W - L - R) * ms) / total;
  const titleId = uid('tl');
  const desc = attempts.map((a, i) =>
    `attempt ${i + 1}: ${a.target || a.provider} ${a.status ?? 'no status'}${a.error_code ? ` ${a.error_code}` : ''}, ${Math.round(a.latency_ms || 0)} ms`).join('; ');
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-labelledby': titleId });
  svg.append(s('title', { id: titleId }, `Attempt timeline. ${desc || 'no upstream attempt'}`));
  let t = 0;
  attempts.forEach((a, i) => {
    const yy = T + i * rowH;
    const start = timed ? a.started_ms : t;
    const len = a.latency_ms || 0;
    const failed = a.error_code || (a.status && a.status >= 400) || a.status === null;
    const label = `${a.target || a.provider}${a.retry ? ` (retry ${a.retry})` : ''}${a.degraded ? ' (degraded)' : ''}`;
    svg.append(s('text', { x: L - 6, y: yy + 17, 'text-anchor': 'end' }, label.length > 24 ? `${label.slice(0, 23)}…` : label));
    svg.append(s('rect', {
      x: x(start), y: yy + 5, width: Math.max(2, x(start + len) - x(start)), height: rowH - 10,
      fill: failed ? '#b91c1c' : '#047857',
    }, s('title', {}, `${label}: ${a.status ?? 'no status'} ${a.error_code || 'ok'} in ${Math.round(len)} ms`)));
    svg.append(s('text', { x: Math.min(x(start + len) + 4, W - 60), y: yy + 17 },
      `${a.status ?? '—'} ${a.error_code || ''}`.trim()));
    t = start + len + gap;
  });
  const axisY = T + Math.max(1, attempts.length) * rowH + 6;
  svg.append(s('line', { x1: L, x2: W - R, y1: axisY, y2: axisY, stroke: '#6b7280' }));
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const ms = total * frac;
    svg.append(s('line', { x1: x(ms), x2: x(ms), y1: axisY, y2: axisY + 4, stroke: '#6b7280' }));
    svg.append(s('text', { x: x(ms), y: axisY + 16, 'text-anchor': 'middle' }, `${Math.round(ms)} ms`));
  }
  return h('figure', {}, h('figcaption', {}, 'Attempt timeline'), svg,
    h('p', { class: 'hint' }, timed
      ? 'Green: the attempt that answered; red: a failed attempt. Gaps between attempts are backoff waits.'
      : 'Green: the attempt that answered; red: a failed attempt. This trace does not record when each attempt started; waits between attempts are drawn as even gaps.'));
}

/** Time buckets for a range: [{from, to}] in Unix ms. */
export function buckets(range) {
  const now = Date.now();
  const spec = {
    '1h': [3600e3, 12],
    '24h': [86400e3, 24],
    '7d': [7 * 86400e3, 28],
  }[range] || [86400e3, 24];
  const [span, n] = spec;
  const step = span / n;
  const end = Math.ceil(now / 60e3) * 60e3;
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const from = end - span + i * step;
    out.push({ from: Math.round(from), to: Math.round(from + step) });
  }
  return out;
}

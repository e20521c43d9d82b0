// DOM building. Every string from the API reaches the page as a text node or an attribute
// value: nothing here ever parses a string as markup, so captured prompts and outputs stay text.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'class') {
      el.setAttribute('class', v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' && 'value' in el) {
      el.value = String(v);
    } else if ((k === 'checked' || k === 'selected' || k === 'disabled') && k in el) {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** An HTML element: h('button', {type: 'button', onclick}, 'Save'). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

let seq = 0;
/** A fresh id for label/input pairs. */
export function uid(prefix = 'f') {
  seq += 1;
  return `${prefix}-${seq}`;
}

/** A labelled field: returns {wrap, input}. kind: 'input' | 'select' | 'textarea'. */
export function field(labelText, kind = 'input', attrs = {}, options = [], hint = null) {
  const id = attrs.id || uid('f');
  const hintId = hint ? `${id}-hint` : null;
  const input = h(kind, { ...attrs, id, 'aria-describedby': hintId });
  if (kind === 'select') {
    for (const o of options) {
      const [value, text] = Array.isArray(o) ? o : [o, o];
      input.append(h('option', { value }, text));
    }
    if (attrs.value !== undefined) input.value = String(attrs.value);
  }
  const wrap = h('div', { class: 'field' },
    h('label', { for: id }, labelText),
    input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
  return { wrap, input };
}

/** A checkbox or radio with its label after it. */
export function check(labelText, attrs = {}) {
  const id = attrs.id || uid('c');
  const input = h('input', { type: 'checkbox', ...attrs, id });
  const wrap = h('div', { class: 'check' }, input, h('label', { for: id }, labelText));
  return { wrap, input };
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** A table: columns [{label, num}], rows of cell arrays (strings or nodes). */
export function table(caption, columns, rows, emptyText = 'Nothing here yet.') {
  const thead = h('thead', {}, h('tr', {}, columns.map((c) =>
    h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label))));
  const tbody = h('tbody', {});
  if (rows.length === 0) {
    tbody.append(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, emptyText)));
  }
  for (const r of rows) {
    tbody.append(h('tr', {}, r.map((cell, i) =>
      h('td', { class: columns[i] && columns[i].num ? 'num' : null }, cell))));
  }
  return h('table', {}, caption ? h('caption', {}, caption) : null, thead, tbody);
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtMs(n) {
  if (n === null || n === undefined) return '—';
  if (n >= 1000) return `${(n / 1000).toFixed(2)} s`;
  // Below 10 ms a rounded figure would read 0 ms for a real, measured latency.
  if (n > 0 && n < 10) return `${n.toFixed(n < 1 ? 2 : 1)} ms`;
  return `${Math.round(n)} ms`;
}

export function fmtCost(n) {
  if (n === null || n === undefined) return '—';
  if (n === 0) return '$0';
  return n < 0.01 ? `$${n.toPrecision(2)}` : `$${n.toFixed(4)}`;
}

export function fmtPct(n) {
  if (n === null || n === undefined) return '—';
  return `${(n * 100).toFixed(1)}%`;
}

/** A little status badge. */
export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}` }, text);
}

let toastTimer = null;
/** A short polite message in the live region. */
export function toast(text) {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.textContent = ''; }, 4000);
}

/** A modal confirmation; resolves true when confirmed. */
export function confirmDialog(message, confirmText = 'Confirm', danger = false) {
  return new Promise((resolve) => {
    const titleId = uid('dlg');
    const dlg = h('dialog', { 'aria-labelledby': titleId });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    dlg.append(
      h('h2', { id: titleId }, 'Please confirm'),
      h('p', {}, message),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: danger ? 'danger' : null, onclick: () => done(true) }, confirmText),
        h('button', { type: 'button', class: 'secondary', onclick: () => done(false) }, 'Cancel')),
    );
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** An error box for an API error, with every problem the API listed in `details`. */
export function errorBox(err) {
  const box = h('div', { class: 'notice err', role: 'alert' });
  box.append(h('p', { class: 'error' }, err && err.message ? err.message : String(err)));
  const details = err && err.details;
  if (Array.isArray(details) && details.length) {
    box.append(h('ul', {}, details.map((d) =>
      h('li', {}, d.param ? h('code', {}, d.param) : null, d.param ? ': ' : null, d.message))));
  }
  return box;
}

/** Copy text to the clipboard; falls back to selecting it. */
export async function copyText(text, node) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied to the clipboard');
  } catch {
    if (node) {
      const range = document.createRange();
      range.selectNodeContents(node);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    toast('Select and copy the text (the clipboard is not available here)');
  }
}

export function pre(text) {
  return h('pre', {}, text);
}

export function json(v) {
  return JSON.stringify(v, null, 2);
}

// Helpers shared by the pages that read and write catalog objects.

import { api, proj } from './api.js';
import { h, badge } from './dom.js';

export const STRATEGY_NAMES = {
  single: 'Direct',
  weighted: 'Weighted split',
  fallback: 'Fallback chain',
  experiment: 'A/B experiment',
  steps: 'Steps',
  route: 'Points at a route',
};

export const ENDPOINTS = ['chat', 'embeddings', 'audio_speech', 'audio_transcription', 'image_generation'];

export async function list(project, collection) {
  return (await api.get(proj(project, collection))).data || [];
}

/** The note shown for an object the config file defines. */
export function fileNote(obj, what = 'object') {
  if (obj.managed_by !== 'file') return null;
  return h('p', { class: 'notice warn' },
    `This ${what} is defined in the config file, so it is read-only here: edit the file instead (the gateway reloads it on save).`);
}

export function managedBadge(obj) {
  return obj.managed_by === 'file' ? badge('config file · read-only', 'file') : null;
}

/** Which strategy a route or function body uses, in the dashboard's terms. */
export function strategyOf(body) {
  if (body.route) return 'route';
  if (Array.isArray(body.steps) && body.steps.length) return 'steps';
  if (body.variants && Object.keys(body.variants).length) return 'experiment';
  const st = body.strategy || 'single';
  if (st === 'single' && Array.isArray(body.targets) && body.targets.length > 1) return 'fallback';
  return st;
}

export function refName(r) { return typeof r === 'string' ? r : r.target; }
/**
 * A route's weight for a target reference: its own, else the target's default weight (from
 * `weights`, name -> weight, as the gateway reads it), else 1.
 */
export function refWeight(r, weights = {}) {
  const dflt = weights[refName(r)] ?? 1;
  return typeof r === 'string' ? dflt : (r.weight ?? dflt);
}
/** Target name -> default weight, from a list of targets. */
export function weightsOf(targets) {
  return Object.fromEntries((targets || []).map((t) => [t.name, t.weight ?? 1]));
}

/** Targets at a glance: "a 70% · b 30%", "a → b", or variants. */
export function glance(body, weights = {}) {
  const st = strategyOf(body);
  if (st === 'route') return `→ route::${body.route}`;
  if (st === 'experiment') {
    const vs = Object.entries(body.variants || {});
    const total = vs.reduce((a, [, v]) => a + (v.weight ?? 1), 0) || 1;
    return vs.map(([n, v]) => `${n}: ${v.target || v.model} ${Math.round(((v.weight ?? 1) * 100) / total)}%`).join(' · ');
  }
  if (st === 'steps') {
    return body.steps.map((stp, i) => `${i + 1}. ${STRATEGY_NAMES[stp.strategy || 'single'] || stp.strategy}: ${(stp.targets || []).map(refName).join(', ')}`).join(' ⇒ ');
  }
  const ts = body.targets || (body.models ? body.models : []);
  if (st === 'weighted') {
    const total = ts.reduce((a, r) => a + refWeight(r, weights), 0) || 1;
    return ts.map((r) => `${refName(r)} ${Math.round((refWeight(r, weights) * 100) / total)}%`).join(' · ');
  }
  if (st === 'fallback') return ts.map(refName).join(' → ');
  return ts.map(refName).join(', ');
}

/** A valid object name made from free text. */
export function slug(text) {
  return String(text).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 128) || 'target';
}

/**
 * Everything a rule can point at: the project's targets, and every model of every provider's
 * allow-list (a target for it is created on save when none exists).
 * Returns [{value, label, target?, provider?, model?, serves?}] (`serves`: the endpoint kind).
 */
export async function targetChoices(project) {
  const [targets, providers] = await Promise.all([list(project, 'targets'), list(project, 'providers')]);
  const out = [];
  const covered = new Set();
  for (const t of targets) {
    out.push({ value: `t:${t.name}`, label: `${t.name} (${t.provider || 'any provider'} / ${t.model})`, target: t.name, serves: t.serves });
    if (t.provider && t.model) covered.add(`${t.provider}\u0000${t.model}`);
  }
  for (const p of providers) {
    for (const m of p.models || []) {
      if (covered.has(`${p.name}\u0000${m}`)) continue;
      out.push({ value: `m:${p.name}\u0000${m}`, label: `${p.name} / ${m} (new target)`, provider: p.name, model: m, serves: (p.serves || {})[m] });
    }
  }
  return { choices: out, targets };
}

/**
 * The target name for a choice value, creating the target when the choice is a provider model.
 */
export async function ensureTarget(project, value, targets, create = true) {
  if (value.startsWith('t:')) return value.slice(2);
  const [provider, model] = value.slice(2).split('\u0000');
  const existing = targets.find((t) => t.provider === provider && t.model === model);
  if (existing) return existing.name;
  let name = slug(`${provider}-${model}`);
  const names = new Set(targets.map((t) => t.name));
  for (let i = 2; names.has(name); i += 1) name = slug(`${provider}-${model}-${i}`);
  // A preview names the target it would make, and makes nothing.
  if (!create) return name;
  try {
    await api.post(proj(project, 'targets'), { name, provider, model });
  } catch (e) {
    // The name may exist in another project (names are unique per install).
    if (e.status !== 409) throw e;
    name = slug(`${project}-${provider}-${model}`);
    await api.post(proj(project, 'targets'), { name, provider, model });
  }
  targets.push({ name, provider, model });
  return name;
}

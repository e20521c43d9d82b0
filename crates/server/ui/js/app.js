// The dashboard shell: sign-in, the project selector, hash routing to the pages.

import { api, login, logout, setUnauthorizedHandler } from './api.js';
import { h, clear, errorBox, toast } from './dom.js';
import * as overview from './pages/overview.js';
import * as providers from './pages/providers.js';
import * as credentials from './pages/credentials.js';
import * as routing from './pages/routing.js';
import * as keys from './pages/keys.js';
import * as traces from './pages/traces.js';
import * as experiments from './pages/experiments.js';
import * as settings from './pages/settings.js';

const PAGES = { overview, providers, credentials, routing, keys, traces, experiments, settings };
const TITLES = {
  overview: 'Overview', providers: 'Providers', credentials: 'Credentials', routing: 'Routing',
  keys: 'API keys', traces: 'Traces', experiments: 'Experiments', settings: 'Settings',
};

const state = { me: null, projects: [], project: null, generation: 0 };

const $ = (id) => document.getElementById(id);

function rankOf(project) {
  if (!state.me) return 0;
  if (state.me.is_admin) return 3;
  return { owner: 3, editor: 2, viewer: 1 }[(state.me.roles || {})[project]] || 0;
}

function showLogin(message) {
  state.me = null;
  $('top-tools').hidden = true;
  $('side').hidden = true;
  clear($('view'));
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  document.title = 'Sign in · Signalbox';
  $('login-username').focus();
}

async function start() {
  try {
    state.me = await api.get('me');
  } catch (e) {
    if (e.status === 401) { showLogin(''); return; }
    clear($('view')).append(errorBox(e));
    return;
  }
  $('login').hidden = true;
  $('top-tools').hidden = false;
  $('side').hidden = false;
  $('who').textContent = `${state.me.user}${state.me.is_admin ? ' (admin)' : ''}`;
  const list = await api.get('projects');
  state.projects = (list.data || []).map((p) => p.name);
  const saved = localStorage.getItem('signalbox.project');
  state.project = state.projects.includes(saved) ? saved : (state.projects[0] || null);
  const sel = clear($('project-select'));
  for (const p of state.projects) sel.append(h('option', { value: p }, p));
  if (state.project) sel.value = state.project;
  await route();
}

function parseHash() {
  const raw = (location.hash || '#/overview').replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const page = PAGES[parts[0]] ? parts[0] : 'overview';
  return { page, args: parts.slice(1), query: new URLSearchParams(query || '') };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  if (!state.me) return;
  state.generation += 1;
  const gen = state.generation;
  const { page, args, query } = parseHash();
  for (const a of document.querySelectorAll('nav.side a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[page]} · Signalbox`;
  const view = clear($('view'));
  const container = h('div', { 'data-page': page });
  view.append(container);
  if (!state.project) {
    container.append(h('h1', {}, TITLES[page]),
      h('p', {}, 'You have no role in any project yet. Ask the admin to give you one.'));
    document.body.dataset.rendered = String(gen);
    return;
  }
  const rank = rankOf(state.project);
  const ctx = {
    project: state.project,
    me: state.me,
    rank,
    canEdit: rank >= 2,
    isOwner: rank >= 3,
    isAdmin: Boolean(state.me.is_admin),
    query,
    navigate,
    alive: () => gen === state.generation,
    reload: () => route(),
  };
  try {
    await PAGES[page].render(ctx, container, args);
  } catch (e) {
    if (gen !== state.generation) return;
    if (e.status === 401) return;
    container.append(errorBox(e));
  }
  if (gen === state.generation) {
    // Tests and tools wait for this: the page for this navigation is drawn.
    document.body.dataset.rendered = String(gen);
    const heading = container.querySelector('h1');
    if (heading && document.activeElement === document.body) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
  }
}

function init() {
  setUnauthorizedHandler(() => showLogin('Your session ended. Sign in again.'));
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    const button = ev.target.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await login($('login-username').value, $('login-password').value);
      $('login-password').value = '';
      if (!location.hash || location.hash === '#/') location.hash = '#/overview';
      await start();
    } catch (e) {
      $('login-error').textContent = e.status === 429
        ? 'Too many failed sign-ins. Wait a minute and try again.'
        : (e.message || 'Sign-in failed');
    } finally {
      button.disabled = false;
    }
  });
  $('logout').addEventListener('click', async () => {
    try {
      await logout();
    } catch (e) {
      // Gone already (401) is signed out; any other failure left the session alive: say so.
      if (e.status !== 401) {
        toast(`Not signed out: ${e.message || 'the server did not answer'}. Try again.`);
        return;
      }
    }
    showLogin('You are signed out.');
  });
  $('project-select').addEventListener('change', (ev) => {
    state.project = ev.target.value;
    localStorage.setItem('signalbox.project', state.project);
    route();
  });
  window.addEventListener('hashchange', () => route());
  // A sign-in posted as a plain form (no script) comes back here with its outcome.
  const outcome = new URLSearchParams(location.search).get('login');
  if (outcome === 'failed' || outcome === 'limited') {
    history.replaceState(null, '', '/ui/');
    showLogin(outcome === 'failed' ? 'Wrong username or password.' : 'Too many failed sign-ins. Wait a minute and try again.');
    return;
  }
  start();
}

init();

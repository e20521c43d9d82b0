//! Raw config -> [`Snapshot`]: every reference resolved, every rule checked, all errors collected.

use super::catalog::{Catalog, CatalogObject, ObjectKind};
use super::raw::*;
use super::{ConfigError, ConfigErrors, Loaded, Seg, display_path, locate};
use crate::model::*;
use crate::providers::transport::{ExtraRoots, Transport, load_ca_bundle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Where a config came from, for error locations.
pub struct ConfigSource<'a> {
    pub text: Option<&'a str>,
    pub file: Option<&'a str>,
}

/// Plain generation params a variant may set (SPEC section 4).
const VARIANT_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
    "response_format",
];
/// Body fields a variant may never override.
const RESERVED_PARAMS: &[&str] = &["model", "messages", "input", "stream", "stream_options"];

struct WellKnown {
    id: &'static str,
    kind: ProviderKind,
    base_url: &'static str,
    needs_key: bool,
}

const WELL_KNOWN: &[WellKnown] = &[
    WellKnown {
        id: "openai",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.openai.com/v1",
        needs_key: true,
    },
    WellKnown {
        id: "groq",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.groq.com/openai/v1",
        needs_key: true,
    },
    WellKnown {
        id: "mistral",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.mistral.ai/v1",
        needs_key: true,
    },
    WellKnown {
        id: "deepseek",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.deepseek.com/v1",
        needs_key: true,
    },
    WellKnown {
        id: "openrouter",
        kind: ProviderKind::OpenAi,
        base_url: "https://openrouter.ai/api/v1",
        needs_key: true,
    },
    WellKnown {
        id: "together",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.together.xyz/v1",
        needs_key: true,
    },
    WellKnown {
        id: "fireworks",
        kind: ProviderKind::OpenAi,
        base_url: "https://api.fireworks.ai/inference/v1",
        needs_key: true,
    },
    WellKnown {
        id: "ollama",
        kind: ProviderKind::OpenAi,
        base_url: "http://127.0.0.1:11434/v1",
        needs_key: false,
    },
    WellKnown {
        id: "anthropic",
        kind: ProviderKind::Anthropic,
        base_url: "https://api.anthropic.com/v1",
        needs_key: true,
    },
    WellKnown {
        id: "gemini",
        kind: ProviderKind::Gemini,
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        needs_key: true,
    },
    WellKnown {
        id: "google",
        kind: ProviderKind::Gemini,
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        needs_key: true,
    },
    WellKnown {
        id: "mock",
        kind: ProviderKind::Mock,
        base_url: "mock://local",
        needs_key: false,
    },
];

/// The Azure OpenAI API version used when a provider does not set `api_version`.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// Upstream URLs that depend on the target (Azure deployments), else empty.
fn target_urls(
    provider: &Provider,
    deployment: Option<&str>,
    model: &str,
) -> Vec<(&'static str, reqwest::Url, http::Uri)> {
    match (provider.kind, provider.api_version.as_deref()) {
        (ProviderKind::AzureOpenAi, Some(v)) => {
            azure_urls(&provider.base_url, deployment.unwrap_or(model), v)
        }
        (ProviderKind::Gemini, _) => crate::model::gemini_urls(&provider.base_url, model),
        _ => Vec::new(),
    }
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

fn p(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|s| k(s)).collect()
}

fn with(mut base: Vec<Seg>, more: Seg) -> Vec<Seg> {
    base.push(more);
    base
}

struct Ctx<'a> {
    src: &'a ConfigSource<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    catalog: &'a Catalog,
    /// `(table, name)` of objects that came from the store: their errors name no file line.
    from_store: BTreeSet<(&'static str, String)>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    /// Whether a key path lies inside an object that came from the store.
    fn in_store_object(&self, path: &[Seg]) -> bool {
        match (path.first(), path.get(1)) {
            (Some(Seg::Key(t)), Some(Seg::Key(n))) => {
                self.from_store.iter().any(|(st, sn)| st == t && sn == n)
            }
            _ => false,
        }
    }

    fn err(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        let stored = self.in_store_object(&path);
        let (file, line) = if stored {
            (None, None)
        } else {
            (
                self.src.file.map(str::to_string),
                self.src.text.and_then(|t| locate(t, &path)),
            )
        };
        self.errors.push(ConfigError {
            key: display_path(&path),
            message: message.into(),
            file,
            line,
        });
    }

    /// An `env::VAR` reference that must be set, or a `credential::NAME` of the store
    /// belonging to `project` (None: any project, for server-wide secrets).
    fn secret_ref(&mut self, value: &str, path: Vec<Seg>, project: Option<&str>) -> Option<Secret> {
        if let Some(name) = value.strip_prefix("credential::") {
            return match self.catalog.credentials.get(name) {
                Some(c) if project.is_none_or(|p| p == c.project) => Some(c.secret.clone()),
                Some(c) => {
                    // The other project is not named: the writer may have no role there.
                    let _ = c;
                    let msg = format!(
                        "credential '{name}' belongs to another project, not '{}'",
                        project.unwrap_or_default()
                    );
                    self.err(path, msg);
                    None
                }
                None => {
                    self.err(path, format!("no stored credential named '{name}'"));
                    None
                }
            };
        }
        if self.in_store_object(&path) {
            // An admin API user must not make the gateway send one of its own environment
            // variables (the master key, a database URL, ...) to a URL of their choosing.
            self.err(
                path,
                "objects in the store reference stored credentials (\"credential::NAME\"); env:: references belong in the config file",
            );
            return None;
        }
        let Some(var) = value.strip_prefix("env::") else {
            self.err(
                path,
                "must be a reference like \"env::VAR\" or \"credential::NAME\"; raw secrets are not allowed in the config file",
            );
            return None;
        };
        if var.is_empty() {
            self.err(path, "\"env::\" needs a variable name");
            return None;
        }
        match (self.env)(var) {
            Some(v) if !v.trim().is_empty() => {
                // Secrets mounted from files often end with a newline: trim it, and refuse
                // anything that still cannot travel in an HTTP header.
                let v = v.trim();
                if http::HeaderValue::from_str(v).is_err() {
                    self.err(
                        path,
                        format!("environment variable {var} holds characters that cannot be sent in an HTTP header"),
                    );
                    return None;
                }
                Some(Secret::new(v))
            }
            Some(_) => {
                self.err(path, format!("environment variable {var} is set but empty"));
                None
            }
            None => {
                self.err(path, format!("environment variable {var} is not set"));
                None
            }
        }
    }
}

fn ms(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_millis)
}

#[derive(Clone, Copy, Default)]
struct PartialTimeouts {
    connect: Option<Duration>,
    headers: Option<Duration>,
    first_byte: Option<Duration>,
    idle: Option<Duration>,
}

impl PartialTimeouts {
    fn from_ms(c: Option<u64>, t: Option<u64>, f: Option<u64>, i: Option<u64>) -> Self {
        // Zero is rejected by `check_timeouts`; it never reaches a request.
        PartialTimeouts {
            connect: ms(c),
            headers: ms(t),
            first_byte: ms(f),
            idle: ms(i),
        }
    }
    /// `self` wins over `base`.
    fn over(self, base: PartialTimeouts) -> PartialTimeouts {
        PartialTimeouts {
            connect: self.connect.or(base.connect),
            headers: self.headers.or(base.headers),
            first_byte: self.first_byte.or(base.first_byte),
            idle: self.idle.or(base.idle),
        }
    }
    fn finish(self) -> Timeouts {
        Timeouts {
            connect: self.connect.unwrap_or(Duration::from_millis(5000)),
            headers: self.headers,
            first_byte: self.first_byte.unwrap_or(Duration::from_millis(60_000)),
            idle: self.idle.unwrap_or(Duration::from_millis(60_000)),
        }
    }
}

fn merge_retry(base: RetryPolicy, raw: Option<&RawRetry>) -> RetryPolicy {
    let Some(r) = raw else { return base };
    RetryPolicy {
        max_retries: r.max_retries.unwrap_or(base.max_retries),
        backoff_base: r
            .backoff_base_ms
            .map(Duration::from_millis)
            .unwrap_or(base.backoff_base),
        backoff_max: r
            .backoff_max_ms
            .map(Duration::from_millis)
            .unwrap_or(base.backoff_max),
    }
}

/// The names objects may have, in the file and through the admin API alike: model ids such
/// as `BAAI/bge-small`, `llama3:8b` or `claude@2024` included, but never `::` (the prefix mark).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("::")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
}

/// A project's or a stored credential's name, in the file as through the admin API: 1 to 128
/// letters, digits, `-`, `_` or `.` (it is a path segment of the admin API).
pub fn valid_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `[store]` is read at start, but checked with the rest of the file (by `check` and by every
/// live reload), so an edit that would stop the next start is refused now.
fn check_store(cx: &mut Ctx<'_>, store: &crate::config::raw::RawStore) {
    if let Some(url) = store.url.as_deref() {
        let path = p(&["store", "url"]);
        let value = match url.strip_prefix("env::") {
            Some(var) => match (cx.env)(var) {
                Some(v) if !v.trim().is_empty() => Some(v),
                set => {
                    let state = if set.is_some() {
                        "is set but empty"
                    } else {
                        "is not set"
                    };
                    cx.err(
                        path.clone(),
                        format!("names environment variable {var}, which {state}"),
                    );
                    None
                }
            },
            None => Some(url.to_string()),
        };
        // Only the scheme is quoted back: the rest may hold a password.
        if let Some(v) = value
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|s| v.starts_with(s))
        {
            let scheme = v.split_once(':').map_or("", |(s, _)| s);
            cx.err(
                path,
                format!(
                    "unsupported store URL (scheme '{scheme}'): use sqlite://PATH or postgres://..."
                ),
            );
        }
    }
    for (key, value) in [
        ("data_dir", &store.data_dir),
        ("master_key_file", &store.master_key_file),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            cx.err(p(&["store", key]), "must not be empty");
        }
    }
}

/// Every `project = "..."` in the file names a project the admin API can address.
fn check_project_names(cx: &mut Ctx<'_>, raw: &RawConfig) {
    let named = raw
        .providers
        .iter()
        .map(|(n, o)| ("providers", n, o.project.as_deref()))
        .chain(
            raw.targets
                .iter()
                .map(|(n, o)| ("targets", n, o.project.as_deref())),
        )
        .chain(
            raw.routes
                .iter()
                .map(|(n, o)| ("routes", n, o.project.as_deref())),
        )
        .chain(
            raw.functions
                .iter()
                .map(|(n, o)| ("functions", n, o.project.as_deref())),
        )
        .chain(
            raw.api_keys
                .iter()
                .map(|(n, o)| ("api_keys", n, o.project.as_deref())),
        );
    for (table, name, project) in named {
        if let Some(project) = project.filter(|p| !valid_plain_name(p)) {
            cx.err(
                p(&[table, name, "project"]),
                format!(
                    "project '{project}' is not a valid project name (1 to 128 letters, digits, '-', '_' or '.')"
                ),
            );
        }
    }
}

struct ModelInfo {
    endpoint: EndpointKind,
    timeouts: PartialTimeouts,
    price: Price,
}

struct BuiltProvider {
    provider: Arc<Provider>,
    timeouts: PartialTimeouts,
    /// Its connections refuse link-local and metadata addresses (see `GuardedResolver`).
    guarded: bool,
}

/// Validate a raw config into a snapshot, collecting every error.
pub fn build_snapshot(
    mut raw: RawConfig,
    src: &ConfigSource<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    version: u64,
    catalog: &Catalog,
) -> Result<Loaded, ConfigErrors> {
    let mut cx = Ctx {
        src,
        env,
        catalog,
        from_store: BTreeSet::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    check_project_names(&mut cx, &raw);
    check_store(&mut cx, &raw.store);
    merge_catalog(&mut cx, &mut raw);

    let server = build_server(&mut cx, &raw.server);
    let default_retry = merge_retry(RetryPolicy::default(), raw.routing.retry.as_ref());
    check_retry(&mut cx, p(&["routing", "retry"]), default_retry);

    let ca_roots = match raw.server.ca_bundle.as_deref() {
        Some(path) => match load_ca_bundle(&relative_to_file(src.file, path)) {
            Ok(c) => c,
            Err(e) => {
                cx.err(p(&["server", "ca_bundle"]), e);
                ExtraRoots::default()
            }
        },
        None => ExtraRoots::default(),
    };
    if let Some(t) = &raw.defaults.provider {
        let keys = timeout_keys(
            t.connect_timeout_ms,
            t.timeout_ms,
            t.first_byte_timeout_ms,
            t.idle_timeout_ms,
        );
        check_timeouts(&mut cx, &p(&["defaults", "provider"]), keys);
    }
    let defaults = raw
        .defaults
        .provider
        .map(|t| {
            PartialTimeouts::from_ms(
                t.connect_timeout_ms,
                t.timeout_ms,
                t.first_byte_timeout_ms,
                t.idle_timeout_ms,
            )
        })
        .unwrap_or_default();

    // Models.
    let mut models: HashMap<String, ModelInfo> = HashMap::new();
    for (name, m) in &raw.models {
        let path = p(&["models", name]);
        if !valid_name(name) {
            cx.err(
                path.clone(),
                "names may use letters, digits and - _ . / : @, and no \"::\"",
            );
        }
        let endpoint = match m.endpoint.as_deref() {
            None => EndpointKind::Chat,
            Some(e) => match EndpointKind::parse(e) {
                Some(k) => k,
                None => {
                    cx.err(with(path.clone(), k("endpoint")), unknown_endpoint(e));
                    EndpointKind::Chat
                }
            },
        };
        for (key, v) in [
            ("input_price", m.input_price),
            ("output_price", m.output_price),
            ("cached_input_price", m.cached_input_price),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                cx.err(
                    with(path.clone(), k(key)),
                    "must be a price in USD per million tokens, zero or more",
                );
            }
        }
        let keys = timeout_keys(
            m.connect_timeout_ms,
            m.timeout_ms,
            m.first_byte_timeout_ms,
            m.idle_timeout_ms,
        );
        check_timeouts(&mut cx, &path, keys);
        models.insert(
            name.clone(),
            ModelInfo {
                endpoint,
                timeouts: PartialTimeouts::from_ms(
                    m.connect_timeout_ms,
                    m.timeout_ms,
                    m.first_byte_timeout_ms,
                    m.idle_timeout_ms,
                ),
                price: Price {
                    input: m.input_price,
                    output: m.output_price,
                    cached_input: m.cached_input_price,
                },
            },
        );
    }
    let model_kind = |m: &str| {
        models
            .get(m)
            .map(|i| i.endpoint)
            .unwrap_or(EndpointKind::Chat)
    };

    // Providers, with one pooled client per (provider, connect timeout), kept from earlier
    // snapshots when unchanged.
    crate::providers::transport::next_build();
    let mut clients: HashMap<(String, Duration), Transport> = HashMap::new();
    let mut providers: BTreeMap<String, BuiltProvider> = BTreeMap::new();
    for (id, rp) in &raw.providers {
        if let Some(bp) = build_provider(
            &mut cx,
            id,
            rp,
            defaults,
            &ca_roots,
            &mut clients,
            &model_kind,
            !server.allow_link_local_upstreams,
        ) {
            providers.insert(id.clone(), bp);
        }
    }

    // Targets.
    let mut targets: BTreeMap<String, (String, Arc<Target>)> = BTreeMap::new();
    for (name, rt) in &raw.targets {
        let path = p(&["targets", name]);
        if !valid_name(name) {
            cx.err(
                path.clone(),
                "names may use letters, digits and - _ . / : @, and no \"::\"",
            );
        }
        let project = rt.project.clone().unwrap_or_else(|| "default".into());
        let Some(model) = rt.model.clone() else {
            cx.err(path, "a target needs `model`");
            continue;
        };
        let Some(bp) = find_provider(
            &mut cx,
            &providers,
            &project,
            rt.provider.as_deref(),
            &model,
            path.clone(),
            false,
        ) else {
            continue;
        };
        let provider = bp.provider.clone();
        let auth = match rt.credential.as_deref() {
            Some(c) => {
                match cx.secret_ref(c, with(path.clone(), k("credential")), Some(&project)) {
                    Some(s) => TargetAuth::Credential(s),
                    None => continue,
                }
            }
            None => match &provider.credential {
                Some(s) => TargetAuth::Credential(s.clone()),
                None => TargetAuth::None,
            },
        };
        if rt.deployment.is_some() && provider.kind != ProviderKind::AzureOpenAi {
            cx.err(
                with(path.clone(), k("deployment")),
                format!(
                    "`deployment` is for azure-openai targets; provider '{}' is {}",
                    provider.id,
                    provider.kind.as_str()
                ),
            );
        }
        let info = models.get(&model);
        check_timeouts(
            &mut cx,
            &path,
            timeout_keys(
                rt.connect_timeout_ms,
                rt.timeout_ms,
                rt.first_byte_timeout_ms,
                rt.idle_timeout_ms,
            ),
        );
        let own = PartialTimeouts::from_ms(
            rt.connect_timeout_ms,
            rt.timeout_ms,
            rt.first_byte_timeout_ms,
            rt.idle_timeout_ms,
        );
        let merged = own
            .over(info.map(|i| i.timeouts).unwrap_or_default())
            .over(bp.timeouts)
            .finish();
        let transport = client_for(
            &mut cx,
            &mut clients,
            &provider.id,
            &provider.base_url,
            merged.connect,
            &ca_roots,
            path.clone(),
            bp.guarded,
        );
        let Some(transport) = transport else { continue };
        let price = crate::pricing::resolve(info.map(|i| i.price), &model);
        let target = Target {
            credential_header: crate::model::credential_header(&provider, &auth),
            request_head: std::sync::OnceLock::new(),
            urls: target_urls(&provider, rt.deployment.as_deref(), &model),
            model_header: header_value(&model),
            name: name.clone(),
            provider,
            endpoint: model_kind(&model),
            model,
            auth,
            weight: rt.weight.unwrap_or(1),
            deployment: rt.deployment.clone(),
            timeouts: merged,
            price,
            transport,
            passthrough: false,
        };
        targets.insert(name.clone(), (project, Arc::new(target)));
    }

    let mut projects: BTreeMap<String, ProjectSnapshot> = BTreeMap::new();
    proj_mut(&mut projects, "default");
    for bp in providers.values() {
        let prov = &bp.provider;
        let ps = proj_mut(&mut projects, &prov.project);
        ps.providers.insert(prov.id.clone(), prov.clone());
        for m in &prov.models {
            ps.model_kinds.insert(m.clone(), model_kind(m));
        }
        let auth = match prov.passthrough {
            PassthroughMode::Off => continue,
            // The built-in mock needs no key at all.
            PassthroughMode::CallerKey if prov.kind == ProviderKind::Mock => TargetAuth::None,
            PassthroughMode::CallerKey => TargetAuth::Caller,
            PassthroughMode::Credential => match &prov.credential {
                Some(s) => TargetAuth::Credential(s.clone()),
                None => continue,
            },
        };
        for m in &prov.models {
            let info = models.get(m);
            let timeouts = info
                .map(|i| i.timeouts)
                .unwrap_or_default()
                .over(bp.timeouts)
                .finish();
            let transport = if timeouts.connect == bp.timeouts.finish().connect {
                prov.transport.clone()
            } else {
                match client_for(
                    &mut cx,
                    &mut clients,
                    &prov.id,
                    &prov.base_url,
                    timeouts.connect,
                    &ca_roots,
                    p(&["models", m]),
                    bp.guarded,
                ) {
                    Some(t) => t,
                    None => continue,
                }
            };
            let target = Arc::new(Target {
                credential_header: crate::model::credential_header(prov, &auth),
                request_head: std::sync::OnceLock::new(),
                urls: target_urls(prov, None, m),
                model_header: header_value(m),
                name: format!("{}::{}", prov.id, m),
                provider: prov.clone(),
                model: m.clone(),
                auth: auth.clone(),
                weight: 1,
                deployment: None,
                endpoint: model_kind(m),
                timeouts,
                price: crate::pricing::resolve(info.map(|i| i.price), m),
                transport,
                passthrough: true,
            });
            ps.passthrough.insert((prov.id.clone(), m.clone()), target);
            ps.provider_models
                .entry(m.clone())
                .or_default()
                .push(prov.clone());
        }
    }

    // Routes and functions.
    let mut used: BTreeSet<String> = BTreeSet::new();
    let declared = |n: &str| raw.targets.contains_key(n);
    let mut builder = BodyBuilder {
        models: &models,
        targets: &targets,
        declared: &declared,
        providers: &providers,
        model_kind: &model_kind,
        used: &mut used,
    };
    let mut routes: BTreeMap<String, (String, Arc<Route>)> = BTreeMap::new();
    for (name, rr) in &raw.routes {
        let path = p(&["routes", name]);
        if !valid_name(name) {
            cx.err(
                path.clone(),
                "names may use letters, digits and - _ . / : @, and no \"::\"",
            );
        }
        let proj = rr.project.clone().unwrap_or_else(|| "default".into());
        let endpoint = parse_endpoint(
            &mut cx,
            rr.endpoint.as_deref(),
            with(path.clone(), k("endpoint")),
        );
        let retry = merge_retry(default_retry, rr.retry.as_ref());
        // Checked where written: an inherited policy was checked where it came from.
        if rr.retry.is_some() {
            check_retry(&mut cx, with(path.clone(), k("retry")), retry);
        }
        let spec = BodySpec {
            strategy: rr.strategy.as_deref(),
            targets: rr.targets.as_deref(),
            steps: rr.steps.as_deref(),
            variants: rr.variants.as_ref(),
            inline_models: None,
            sticky: rr.sticky.as_deref(),
        };
        let Some(body) = builder.build(&mut cx, &path, name, &proj, endpoint, retry, spec) else {
            continue;
        };
        for m in &rr.models {
            if m.contains("::") {
                cx.err(
                    with(path.clone(), k("models")),
                    format!("'{m}' has a prefix; `models` lists bare names"),
                );
            }
        }
        let route = Route::new(
            name.clone(),
            RouteLayer::Route,
            endpoint,
            rr.models.clone(),
            Arc::new(body),
            None,
            object_version(catalog, ObjectKind::Route, name),
        );
        routes.insert(name.clone(), (proj, Arc::new(route)));
    }
    let mut functions: BTreeMap<String, (String, Arc<Route>)> = BTreeMap::new();
    for (name, rf) in &raw.functions {
        let path = p(&["functions", name]);
        if !valid_name(name) {
            cx.err(
                path.clone(),
                "names may use letters, digits and - _ . / : @, and no \"::\"",
            );
        }
        let proj = rf.project.clone().unwrap_or_else(|| "default".into());
        let endpoint = parse_endpoint(
            &mut cx,
            rf.endpoint.as_deref(),
            with(path.clone(), k("endpoint")),
        );
        let given: Vec<&str> = [
            ("route", rf.route.is_some()),
            ("models", rf.models.is_some()),
            ("targets", rf.targets.is_some()),
            ("steps", rf.steps.is_some()),
            ("variants", rf.variants.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        if given.len() != 1 {
            cx.err(
                path.clone(),
                format!(
                    "a function needs exactly one of route, models, targets, steps, variants (found {})",
                    if given.is_empty() { "none".to_string() } else { given.join(", ") }
                ),
            );
            continue;
        }
        if let Some(route_name) = &rf.route {
            for (key, set) in [
                ("strategy", rf.strategy.is_some()),
                ("retry", rf.retry.is_some()),
                ("sticky", rf.sticky.is_some()),
            ] {
                if set {
                    cx.err(with(path.clone(), k(key)), format!("a function that points at a route takes its `{key}` from the route; set it on route '{route_name}'"));
                }
            }
            let Some((rproj, route)) = routes.get(route_name) else {
                cx.err(
                    with(path.clone(), k("route")),
                    format!("unknown route '{route_name}'"),
                );
                continue;
            };
            if *rproj != proj {
                cx.err(
                    with(path.clone(), k("route")),
                    format!("route '{route_name}' belongs to another project, not '{proj}'"),
                );
                continue;
            }
            if route.endpoint != endpoint {
                cx.err(
                    with(path.clone(), k("route")),
                    format!(
                        "route '{route_name}' serves {}, the function is {}",
                        route.endpoint, endpoint
                    ),
                );
                continue;
            }
            let f = Route::new(
                name.clone(),
                RouteLayer::Function,
                endpoint,
                Vec::new(),
                route.body.clone(),
                Some(route_name.clone()),
                object_version(catalog, ObjectKind::Function, name),
            );
            functions.insert(name.clone(), (proj, Arc::new(f)));
            continue;
        }
        let retry = merge_retry(default_retry, rf.retry.as_ref());
        if rf.retry.is_some() {
            check_retry(&mut cx, with(path.clone(), k("retry")), retry);
        }
        let spec = BodySpec {
            strategy: rf.strategy.as_deref(),
            targets: rf.targets.as_deref(),
            steps: rf.steps.as_deref(),
            variants: rf.variants.as_ref(),
            inline_models: rf.models.as_deref(),
            sticky: rf.sticky.as_deref(),
        };
        let Some(body) = builder.build(&mut cx, &path, name, &proj, endpoint, retry, spec) else {
            continue;
        };
        let f = Route::new(
            name.clone(),
            RouteLayer::Function,
            endpoint,
            Vec::new(),
            Arc::new(body),
            None,
            object_version(catalog, ObjectKind::Function, name),
        );
        functions.insert(name.clone(), (proj, Arc::new(f)));
    }

    for (name, (proj, route)) in routes {
        let ps = proj_mut(&mut projects, &proj);
        for m in &route.models {
            let key = (route.endpoint, m.clone());
            if let Some(other) = ps.route_models.get(&key) {
                let msg = format!(
                    "model '{m}' is already listed by route '{}' for {}",
                    other.name, route.endpoint
                );
                cx.err(p(&["routes", &name, "models"]), msg);
            } else {
                ps.route_models.insert(key, route.clone());
            }
        }
        ps.routes.insert(name, route);
    }
    for (name, (proj, f)) in functions {
        proj_mut(&mut projects, &proj).functions.insert(name, f);
    }

    // Bare targets that nothing uses: an implicit direct route for their model.
    let mut implicit: BTreeMap<(String, String), Vec<Arc<Target>>> = BTreeMap::new();
    for (name, (proj, t)) in &targets {
        if !used.contains(name) {
            implicit
                .entry((proj.clone(), t.model.clone()))
                .or_default()
                .push(t.clone());
        }
    }
    for ((proj, model), ts) in implicit {
        let name = if ts.len() == 1 {
            ts[0].name.clone()
        } else {
            model.clone()
        };
        let strategy = if ts.len() == 1 {
            Strategy::Single
        } else {
            Strategy::Weighted
        };
        if ts.len() > 1 && ts.iter().all(|t| t.weight == 0) {
            // Split by weight between the unused targets of one model: all zero splits nothing.
            for t in &ts {
                cx.err(
                    p(&["targets", &t.name, "weight"]),
                    format!(
                        "all weights are zero among the targets for model '{model}' that no route uses (they split its calls by weight)"
                    ),
                );
            }
        }
        let route = Route::new(
            name,
            RouteLayer::ImplicitTarget,
            ts[0].endpoint,
            vec![model.clone()],
            Arc::new(RouteBody::Steps(vec![Step {
                strategy,
                targets: ts
                    .iter()
                    .map(|t| WeightedTarget {
                        target: t.clone(),
                        weight: t.weight,
                    })
                    .collect(),
                retry: default_retry,
            }])),
            None,
            0,
        );
        proj_mut(&mut projects, &proj)
            .implicit
            .insert(model, Arc::new(route));
    }

    // Gateway keys.
    let mut keys: HashMap<[u8; 32], KeyEntry> = HashMap::new();
    for (name, rk) in &raw.api_keys {
        let path = p(&["api_keys", name]);
        let Some(key) = rk.key.as_deref() else {
            cx.err(path, "an API key needs `key = \"env::VAR\"`");
            continue;
        };
        let proj = rk.project.clone().unwrap_or_else(|| "default".into());
        let Some(secret) = cx.secret_ref(key, with(path.clone(), k("key")), Some(&proj)) else {
            continue;
        };
        proj_mut(&mut projects, &proj);
        let h = catalog.key_hasher.hash(secret.expose());
        if let Some(other) = keys.get(&h) {
            let msg = format!(
                "the same key value is already used by api_keys.{}",
                other.id
            );
            cx.err(with(path, k("key")), msg);
            continue;
        }
        keys.insert(
            h,
            KeyEntry {
                id: name.clone(),
                project: proj,
                expires_at_ms: None,
            },
        );
    }
    for (h, entry) in &catalog.keys {
        proj_mut(&mut projects, &entry.project);
        match keys.get(h) {
            // One value for two projects: which one a caller reaches must not be a guess.
            Some(file) if file.project != entry.project => {
                let msg = format!(
                    "the same key value is the store's gateway key {} of project '{}'; this entry names project '{}'",
                    entry.id, entry.project, file.project
                );
                cx.err(p(&["api_keys", &file.id, "key"]), msg);
            }
            Some(_) => {}
            None => {
                keys.insert(*h, entry.clone());
            }
        }
    }
    for name in &catalog.projects {
        proj_mut(&mut projects, name);
    }
    for name in &catalog.capture_content {
        proj_mut(&mut projects, name).capture_content = true;
    }

    if !cx.errors.is_empty() {
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Loaded {
        snapshot: Snapshot {
            server,
            projects: projects.into_iter().collect(),
            keys,
            key_hasher: catalog.key_hasher.clone(),
            version,
            default_retry,
        },
        warnings: cx.warnings,
    })
}

/// The history version of a store route or function; 0 for one from the file (no history).
fn object_version(catalog: &Catalog, kind: ObjectKind, name: &str) -> u64 {
    catalog
        .objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .map(|o| o.version.max(0) as u64)
        .unwrap_or(0)
}

/// Store objects join the file's tables; a name in both is an error naming both.
fn merge_catalog(cx: &mut Ctx<'_>, raw: &mut RawConfig) {
    fn put<T: serde::de::DeserializeOwned + HasProject>(
        cx: &mut Ctx<'_>,
        table: &'static str,
        map: &mut BTreeMap<String, T>,
        o: &CatalogObject,
    ) {
        if let Some(existing) = map.get(&o.name) {
            let file = cx.src.file.unwrap_or("the config file");
            let line = cx
                .src
                .text
                .and_then(|t| locate(t, &p(&[table, &o.name])))
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            let msg = format!(
                "defined both in {file}{line} (project '{}') and in the store (project '{}'); rename or remove one",
                existing.project().unwrap_or("default"),
                o.project
            );
            cx.from_store.insert((table, o.name.clone()));
            cx.err(p(&[table, &o.name]), msg);
            return;
        }
        cx.from_store.insert((table, o.name.clone()));
        match serde_json::from_value::<T>(o.body.clone()) {
            Ok(mut v) => {
                v.set_project(o.project.clone());
                map.insert(o.name.clone(), v);
            }
            Err(e) => cx.err(p(&[table, &o.name]), e.to_string()),
        }
    }
    let catalog = cx.catalog;
    for o in &catalog.objects {
        match o.kind {
            ObjectKind::Provider => put(cx, "providers", &mut raw.providers, o),
            ObjectKind::Model => put(cx, "models", &mut raw.models, o),
            ObjectKind::Target => put(cx, "targets", &mut raw.targets, o),
            ObjectKind::Route => put(cx, "routes", &mut raw.routes, o),
            ObjectKind::Function => put(cx, "functions", &mut raw.functions, o),
        }
    }
}

fn proj_mut<'m>(
    projects: &'m mut BTreeMap<String, ProjectSnapshot>,
    name: &str,
) -> &'m mut ProjectSnapshot {
    projects
        .entry(name.to_string())
        .or_insert_with(|| ProjectSnapshot {
            name: name.to_string(),
            ..Default::default()
        })
}

/// Relative paths in the file are relative to the file.
fn relative_to_file(file: Option<&str>, path: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(path);
    match file.and_then(|f| std::path::Path::new(f).parent()) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

fn unknown_endpoint(e: &str) -> String {
    let all: Vec<&str> = EndpointKind::ALL.iter().map(|k| k.as_str()).collect();
    format!("unknown endpoint kind '{e}' (one of {})", all.join(", "))
}

fn parse_endpoint(cx: &mut Ctx<'_>, v: Option<&str>, path: Vec<Seg>) -> EndpointKind {
    match v {
        None => EndpointKind::Chat,
        Some(e) => EndpointKind::parse(e).unwrap_or_else(|| {
            cx.err(path, unknown_endpoint(e));
            EndpointKind::Chat
        }),
    }
}

/// A zero timeout would fail every attempt: refuse it where it is written.
fn check_timeouts(cx: &mut Ctx<'_>, path: &[Seg], values: [(&str, Option<u64>); 4]) {
    for (key, v) in values {
        if v == Some(0) {
            cx.err(
                with(path.to_vec(), k(key)),
                "a timeout must be greater than zero",
            );
        }
    }
}

fn timeout_keys(
    c: Option<u64>,
    t: Option<u64>,
    f: Option<u64>,
    i: Option<u64>,
) -> [(&'static str, Option<u64>); 4] {
    [
        ("connect_timeout_ms", c),
        ("timeout_ms", t),
        ("first_byte_timeout_ms", f),
        ("idle_timeout_ms", i),
    ]
}

fn check_retry(cx: &mut Ctx<'_>, path: Vec<Seg>, r: RetryPolicy) {
    if r.backoff_base > r.backoff_max {
        cx.err(
            path.clone(),
            "backoff_base_ms must not be larger than backoff_max_ms",
        );
    }
    if r.max_retries > 10 {
        cx.err(
            path_with_retries(path),
            "max_retries above 10 is not allowed",
        );
    }
}

fn path_with_retries(path: Vec<Seg>) -> Vec<Seg> {
    with(path, k("max_retries"))
}

fn build_server(cx: &mut Ctx<'_>, s: &RawServer) -> ServerSettings {
    let auth = match s.auth.as_deref() {
        None | Some("keys") => AuthMode::Keys,
        Some("off") => AuthMode::Off,
        Some(other) => {
            cx.err(
                p(&["server", "auth"]),
                format!("unknown auth mode '{other}' (\"keys\" or \"off\")"),
            );
            AuthMode::Keys
        }
    };
    let host = s.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    if !is_listen_host(&host) {
        cx.err(
            p(&["server", "host"]),
            format!("'{host}' is not an IP address or a host name"),
        );
    }
    if auth == AuthMode::Off && !is_loopback_host(&host) {
        cx.err(
            p(&["server", "auth"]),
            format!("auth = \"off\" is only allowed on a loopback address, not {host}"),
        );
    }
    let metrics_token = s.metrics_token.as_deref().and_then(|t| {
        if t.trim().is_empty() {
            // An empty token would lock every scraper out with a 401 and no clue why.
            cx.err(
                p(&["server", "metrics_token"]),
                "must not be empty (leave it out for an open /metrics)",
            );
            None
        } else if t.starts_with("env::") {
            cx.secret_ref(t, p(&["server", "metrics_token"]), None)
        } else {
            Some(Secret::new(t))
        }
    });
    let admin_listen = s.admin_listen.clone().unwrap_or_else(|| "same".into());
    let host_and_port = admin_listen
        .rsplit_once(':')
        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
    if !matches!(admin_listen.as_str(), "same" | "off" | "") && !host_and_port {
        cx.err(
            p(&["server", "admin_listen"]),
            format!(
                "'{admin_listen}' is not \"same\", \"off\" or an address with a port (127.0.0.1:4001)"
            ),
        );
    }
    for (key, v) in [
        ("max_in_flight", s.max_in_flight),
        ("max_body_bytes", s.max_body_bytes),
        ("max_upload_bytes", s.max_upload_bytes),
        ("request_timeout_ms", s.request_timeout_ms),
        ("header_read_timeout_ms", s.header_read_timeout_ms),
    ] {
        if v == Some(0) {
            cx.err(p(&["server", key]), "must be greater than zero");
        }
    }
    if s.header_read_timeout_ms.is_some_and(|v| v > 86_400_000) {
        cx.err(
            p(&["server", "header_read_timeout_ms"]),
            "must be at most 86400000 (a day)",
        );
    }
    ServerSettings {
        host,
        port: s.port.unwrap_or(4000),
        auth,
        request_timeout: Duration::from_millis(s.request_timeout_ms.unwrap_or(600_000)),
        max_body_bytes: s.max_body_bytes.unwrap_or(16 * 1024 * 1024) as usize,
        max_upload_bytes: s.max_upload_bytes.unwrap_or(32 * 1024 * 1024) as usize,
        max_in_flight: s.max_in_flight.unwrap_or(4096) as usize,
        drain_delay: Duration::from_millis(s.drain_delay_ms.unwrap_or(2000)),
        shutdown_timeout: Duration::from_millis(s.shutdown_timeout_ms.unwrap_or(30_000)),
        header_read_timeout: Duration::from_millis(s.header_read_timeout_ms.unwrap_or(30_000)),
        admin_listen,
        metrics_token,
        allow_link_local_upstreams: s.allow_link_local_upstreams.unwrap_or(false),
    }
}

/// Whether `host` can be listened on by name: an IP address, or a DNS host name (letters,
/// digits and hyphens in dot-separated labels of up to 63 characters).
fn is_listen_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    // All digits and dots is an IPv4 address or nothing (`999.1.1.1`).
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether a host name or address is on loopback.
pub fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[allow(clippy::too_many_arguments)]
fn client_for(
    cx: &mut Ctx<'_>,
    clients: &mut HashMap<(String, Duration), Transport>,
    provider: &str,
    base_url: &str,
    connect: Duration,
    roots: &ExtraRoots,
    path: Vec<Seg>,
    guarded: bool,
) -> Option<Transport> {
    if let Some(t) = clients.get(&(provider.to_string(), connect)) {
        return Some(t.clone());
    }
    match crate::providers::transport::shared(provider, connect, roots, base_url, guarded) {
        Ok(t) => {
            clients.insert((provider.to_string(), connect), t.clone());
            Some(t)
        }
        Err(e) => {
            cx.err(path, e);
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_provider(
    cx: &mut Ctx<'_>,
    id: &str,
    rp: &RawProvider,
    defaults: PartialTimeouts,
    roots: &ExtraRoots,
    clients: &mut HashMap<(String, Duration), Transport>,
    model_kind: &dyn Fn(&str) -> EndpointKind,
    guard_store_objects: bool,
) -> Option<BuiltProvider> {
    let path = p(&["providers", id]);
    if !valid_name(id) {
        cx.err(
            path.clone(),
            "names may use letters, digits and - _ . / : @, and no \"::\"",
        );
    }
    if id == "route" || id == "function" {
        cx.err(
            path.clone(),
            format!("'{id}' is reserved: `{id}::NAME` always means a {id}"),
        );
    }
    let known = WELL_KNOWN.iter().find(|w| w.id == id);
    let kind = match rp.kind.as_deref() {
        Some("openai") => ProviderKind::OpenAi,
        Some("azure-openai") => ProviderKind::AzureOpenAi,
        Some("anthropic") => ProviderKind::Anthropic,
        Some("gemini") => ProviderKind::Gemini,
        Some("mock") => ProviderKind::Mock,
        Some(other) => {
            cx.err(with(path, k("kind")), format!("unknown provider kind '{other}' (openai, azure-openai, anthropic, gemini, mock)"));
            return None;
        }
        None => match known {
            Some(w) => w.kind,
            None => {
                cx.err(path, "`kind` is required for a provider that is not well known (openai, anthropic, gemini, google, groq, mistral, deepseek, openrouter, together, fireworks, ollama, mock)");
                return None;
            }
        },
    };
    let base_url = match (rp.base_url.as_deref(), known) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(w)) if w.kind == kind => w.base_url.to_string(),
        (None, _) if kind == ProviderKind::Mock => "mock://local".to_string(),
        (None, _) => {
            cx.err(path.clone(), "`base_url` is required for this provider");
            String::new()
        }
    };
    // Without a base URL the provider is not built, but the rest of it is still checked
    // (every error in one run).
    let no_url = base_url.is_empty();
    if kind != ProviderKind::Mock && !no_url {
        match reqwest::Url::parse(&base_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => cx.err(
                with(path.clone(), k("base_url")),
                format!("'{base_url}' is not an http(s) URL"),
            ),
        }
    }
    let Some(models) = rp.models.clone() else {
        cx.err(
            path,
            "`models` is required: the models this provider may serve",
        );
        return None;
    };
    for (i, m) in models.iter().enumerate() {
        if m.is_empty() || m.contains("::") {
            cx.err(
                with(with(path.clone(), k("models")), Seg::Index(i)),
                format!("'{m}' is not a valid model name"),
            );
        }
        let mk = model_kind(m);
        if !kind.serves(mk) {
            cx.err(
                with(with(path.clone(), k("models")), Seg::Index(i)),
                format!(
                    "model '{m}' is {mk}, which a {} provider cannot serve",
                    kind.as_str()
                ),
            );
        }
    }
    let credential = match rp.credential.as_deref() {
        Some(c) => cx.secret_ref(
            c,
            with(path.clone(), k("credential")),
            rp.project.as_deref().or(Some("default")),
        ),
        None => match known {
            // A store provider never picks up the conventional variable: its base_url is the
            // API user's to choose, the server's environment is not theirs to send there.
            // A mock needs no key, whatever its id.
            Some(w) if w.needs_key && kind != ProviderKind::Mock && !cx.in_store_object(&path) => {
                let var = format!("{}_API_KEY", id.to_uppercase().replace('-', "_"));
                match (cx.env)(&var) {
                    Some(v) if !v.trim().is_empty() => cx.secret_ref(
                        &format!("env::{var}"),
                        with(path.clone(), k("credential")),
                        None,
                    ),
                    _ => {
                        cx.warnings.push(format!(
                            "provider '{id}': {var} is not set; it serves passthrough calls with the caller's own key only, and its targets without a credential of their own go upstream unauthenticated"
                        ));
                        None
                    }
                }
            }
            _ => None,
        },
    };
    let passthrough = match rp.passthrough.as_deref() {
        None | Some("caller_key") => PassthroughMode::CallerKey,
        Some("credential") => PassthroughMode::Credential,
        Some("off") => PassthroughMode::Off,
        Some(other) => {
            cx.err(
                with(path.clone(), k("passthrough")),
                format!("unknown passthrough mode '{other}' (caller_key, credential, off)"),
            );
            PassthroughMode::CallerKey
        }
    };
    let mut passthrough = passthrough;
    if passthrough == PassthroughMode::Credential && credential.is_none() && rp.credential.is_none()
    {
        match known {
            // The conventional variable is unset: that only warns (already said above), and
            // the provider serves passthrough with caller keys only (SPEC section 5).
            // A mock needs no key, whatever its id.
            Some(w) if w.needs_key && kind != ProviderKind::Mock && !cx.in_store_object(&path) => {
                passthrough = PassthroughMode::CallerKey;
            }
            _ => cx.err(
                with(path.clone(), k("passthrough")),
                "passthrough = \"credential\" needs a `credential`",
            ),
        }
    }
    let auth_type = match rp.auth_type.as_deref() {
        None if matches!(
            kind,
            ProviderKind::AzureOpenAi | ProviderKind::Anthropic | ProviderKind::Gemini
        ) =>
        {
            AuthType::ApiKeyHeader
        }
        None | Some("bearer") => AuthType::Bearer,
        Some("api_key_header") => AuthType::ApiKeyHeader,
        Some("query_param") => AuthType::QueryParam,
        Some(other) => {
            cx.err(
                with(path.clone(), k("auth_type")),
                format!("unknown auth_type '{other}' (bearer, api_key_header, query_param)"),
            );
            AuthType::Bearer
        }
    };
    let default_header = match (auth_type, kind) {
        (AuthType::Bearer, _) => "authorization",
        (AuthType::ApiKeyHeader, ProviderKind::Anthropic) => "x-api-key",
        (AuthType::ApiKeyHeader, ProviderKind::Gemini) => "x-goog-api-key",
        (AuthType::ApiKeyHeader, _) => "api-key",
        (AuthType::QueryParam, _) => "key",
    };
    let header_name = rp.auth_header_name.as_deref().unwrap_or(default_header);
    let auth_header_name = match http::HeaderName::from_bytes(header_name.as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            cx.err(
                with(path.clone(), k("auth_header_name")),
                format!("'{header_name}' is not a valid header name"),
            );
            http::HeaderName::from_static("authorization")
        }
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in &rp.headers {
        let hp = with(with(path.clone(), k("headers")), k(name));
        const FRAMING: &[&str] = &[
            "content-length",
            "transfer-encoding",
            "connection",
            "host",
            "upgrade",
            "te",
            "trailer",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
        ];
        let lower = name.to_ascii_lowercase();
        if FRAMING.contains(&lower.as_str()) {
            cx.err(
                hp,
                format!("`{name}` is set by Signalbox itself and cannot be a static header"),
            );
            continue;
        }
        // A header that carries a key is a secret: never a value written out (it would show
        // in the admin API's answers, history and exports). In the file it is an `env::VAR`;
        // the store's objects take none (`credential` is the provider's key).
        const SECRET: &[&str] = &[
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "anthropic-api-key",
            "cf-aig-authorization",
            "ocp-apim-subscription-key",
        ];
        let secret = SECRET.contains(&lower.as_str()) || lower == auth_header_name.as_str();
        let value = if secret {
            if !value.starts_with("env::") {
                cx.err(
                    hp,
                    format!(
                        "`{name}` carries a key: write it as \"env::VAR\" (the provider's own key is its `credential`)"
                    ),
                );
                continue;
            }
            match cx.secret_ref(value, hp.clone(), rp.project.as_deref().or(Some("default"))) {
                Some(secret) => std::borrow::Cow::Owned(secret.expose().to_string()),
                None => continue,
            }
        } else {
            std::borrow::Cow::Borrowed(value.as_str())
        };
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(secret);
                headers.insert(n, v);
            }
            _ => cx.err(hp, "not a valid HTTP header"),
        }
    }
    if rp.latency_ms.is_some() && kind != ProviderKind::Mock {
        cx.err(
            with(path.clone(), k("latency_ms")),
            "`latency_ms` is only for mock providers",
        );
    }
    if rp.api_version.is_some() && kind != ProviderKind::AzureOpenAi {
        cx.err(
            with(path.clone(), k("api_version")),
            "`api_version` is for azure-openai providers",
        );
    }
    let api_version = match kind {
        ProviderKind::AzureOpenAi => Some(
            rp.api_version
                .clone()
                .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_string()),
        ),
        _ => None,
    };
    check_timeouts(
        cx,
        &path,
        timeout_keys(
            rp.connect_timeout_ms,
            rp.timeout_ms,
            rp.first_byte_timeout_ms,
            rp.idle_timeout_ms,
        ),
    );
    let timeouts = PartialTimeouts::from_ms(
        rp.connect_timeout_ms,
        rp.timeout_ms,
        rp.first_byte_timeout_ms,
        rp.idle_timeout_ms,
    )
    .over(defaults);
    let connect = timeouts.finish().connect;
    if no_url {
        return None;
    }
    // A provider written through the admin API never reaches a link-local or metadata
    // address, however its name resolves when it connects (checked on every connect).
    let guarded = guard_store_objects && cx.in_store_object(&path);
    let transport = client_for(
        cx,
        clients,
        id,
        &base_url,
        connect,
        roots,
        path.clone(),
        guarded,
    )?;
    Some(BuiltProvider {
        provider: Arc::new(Provider {
            id_header: header_value(id),
            host_header: crate::model::host_header(&base_url),
            passthrough_label: format!("passthrough:{id}"),
            passthrough_label_header: header_value(&format!("passthrough:{id}")),
            id: id.to_string(),
            project: rp.project.clone().unwrap_or_else(|| "default".into()),
            kind,
            urls: UPSTREAM_PATHS
                .iter()
                .filter_map(|path| {
                    let full = format!("{base_url}{path}");
                    let url = reqwest::Url::parse(&full).ok()?;
                    let uri = full.parse::<http::Uri>().ok()?;
                    Some((*path, url, uri))
                })
                .collect(),
            base_url,
            models,
            credential,
            passthrough,
            auth_type,
            auth_header_name,
            api_version,
            headers,
            mock_latency: Duration::from_millis(rp.latency_ms.unwrap_or(0)),
            transport,
        }),
        timeouts,
        guarded,
    })
}

/// The provider serving `model`: the one `named`, or the one provider of the project that
/// lists it. `path` is a target's table (errors name its `provider` or `model` key), or with
/// `inline` the key holding a `[PROVIDER::]MODEL` string itself (a variant's or a function's
/// model), whose errors name that key and say how to write it.
fn find_provider<'a>(
    cx: &mut Ctx<'_>,
    providers: &'a BTreeMap<String, BuiltProvider>,
    project: &str,
    named: Option<&str>,
    model: &str,
    path: Vec<Seg>,
    inline: bool,
) -> Option<&'a BuiltProvider> {
    let key = |path: Vec<Seg>, name: &str| if inline { path } else { with(path, k(name)) };
    if let Some(id) = named {
        let Some(bp) = providers.get(id) else {
            cx.err(key(path, "provider"), format!("unknown provider '{id}'"));
            return None;
        };
        if bp.provider.project != project {
            cx.err(
                key(path, "provider"),
                format!("provider '{id}' belongs to another project, not '{project}'"),
            );
            return None;
        }
        if !bp.provider.models.iter().any(|m| m == model) {
            cx.err(
                key(path, "model"),
                format!("provider '{id}' does not list model '{model}' in its `models`"),
            );
            return None;
        }
        return Some(bp);
    }
    let listing: Vec<&BuiltProvider> = providers
        .values()
        .filter(|bp| {
            bp.provider.project == project && bp.provider.models.iter().any(|m| m == model)
        })
        .collect();
    match listing.as_slice() {
        [one] => Some(one),
        [] => {
            cx.err(
                key(path, "model"),
                format!("no provider of project '{project}' lists model '{model}'"),
            );
            None
        }
        many => {
            let ids: Vec<&str> = many.iter().map(|b| b.provider.id.as_str()).collect();
            let how = if inline {
                let named: Vec<String> = ids.iter().map(|id| format!("'{id}::{model}'")).collect();
                format!("write which as {}", named.join(" or "))
            } else {
                "say which with `provider`".to_string()
            };
            cx.err(
                key(path, "provider"),
                format!(
                    "several providers list model '{model}' ({}): {how}",
                    ids.join(", ")
                ),
            );
            None
        }
    }
}

struct BodySpec<'r> {
    strategy: Option<&'r str>,
    targets: Option<&'r [RawTargetRef]>,
    steps: Option<&'r [RawStep]>,
    variants: Option<&'r BTreeMap<String, RawVariant>>,
    inline_models: Option<&'r [String]>,
    sticky: Option<&'r str>,
}

struct BodyBuilder<'b> {
    models: &'b HashMap<String, ModelInfo>,
    targets: &'b BTreeMap<String, (String, Arc<Target>)>,
    /// Every target declared, valid or not: a route naming one that has errors of its own
    /// says so, instead of calling it unknown.
    declared: &'b dyn Fn(&str) -> bool,
    providers: &'b BTreeMap<String, BuiltProvider>,
    model_kind: &'b dyn Fn(&str) -> EndpointKind,
    used: &'b mut BTreeSet<String>,
}

impl BodyBuilder<'_> {
    fn missing_target(&self, name: &str) -> String {
        if (self.declared)(name) {
            format!("target '{name}' is not valid (see its own errors)")
        } else {
            format!("unknown target '{name}'")
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        cx: &mut Ctx<'_>,
        path: &[Seg],
        owner: &str,
        project: &str,
        endpoint: EndpointKind,
        retry: RetryPolicy,
        spec: BodySpec<'_>,
    ) -> Option<RouteBody> {
        let path = path.to_vec();
        let strategy = spec.strategy;
        let given = [
            spec.targets.is_some(),
            spec.steps.is_some(),
            spec.variants.is_some(),
            spec.inline_models.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given == 0 {
            cx.err(path, "needs `targets`, `steps` or `variants`");
            return None;
        }
        if given > 1 {
            cx.err(
                path,
                "give only one of `targets`, `steps`, `variants` (and `models` for functions)",
            );
            return None;
        }
        if spec.sticky.is_some() && spec.variants.is_none() {
            cx.err(
                with(path.clone(), k("sticky")),
                "`sticky` applies to experiments (variants) only",
            );
        }
        if let Some(variants) = spec.variants {
            if let Some(s) = strategy.filter(|s| *s != "experiment") {
                cx.err(
                    with(path.clone(), k("strategy")),
                    format!("a route with variants uses strategy \"experiment\", not \"{s}\""),
                );
            }
            let sticky = match spec.sticky {
                None => Sticky::None,
                Some("user") => Sticky::User,
                Some("session") => Sticky::Session,
                Some(other) => {
                    cx.err(
                        with(path.clone(), k("sticky")),
                        format!("unknown sticky mode '{other}' (\"user\" or \"session\")"),
                    );
                    Sticky::None
                }
            };
            let mut out = Vec::new();
            for (vname, rv) in variants {
                let vpath = with(with(path.clone(), k("variants")), k(vname));
                // A variant's name goes in `x-signalbox-variant` and on traces and metrics.
                if !valid_name(vname) || vname.len() > 128 {
                    cx.err(
                        vpath.clone(),
                        format!("'{vname}' is not a valid variant name (1 to 128 letters, digits, '-', '_', '.', '/', ':' or '@')"),
                    );
                    continue;
                }
                if let Some(v) = self.variant(cx, &vpath, owner, vname, project, endpoint, rv) {
                    out.push(Arc::new(v));
                }
            }
            if out.is_empty() && cx.errors.is_empty() {
                cx.err(
                    with(path.clone(), k("variants")),
                    "an experiment needs at least one variant",
                );
            }
            if !out.is_empty() && out.iter().all(|v| v.weight == 0) {
                cx.err(with(path, k("variants")), "all variant weights are zero");
            }
            return Some(RouteBody::Experiment {
                variants: out,
                sticky,
                retry,
            });
        }
        if strategy == Some("experiment") {
            cx.err(
                with(path, k("strategy")),
                "strategy \"experiment\" needs `variants`",
            );
            return None;
        }
        if let Some(steps) = spec.steps {
            if let Some(s) = strategy.filter(|s| *s != "fallback") {
                cx.err(with(path.clone(), k("strategy")), format!("a route with steps is a fallback chain of steps; strategy \"{s}\" belongs on a step"));
            }
            if steps.is_empty() {
                cx.err(with(path, k("steps")), "needs at least one step");
                return None;
            }
            let mut out = Vec::new();
            for (i, st) in steps.iter().enumerate() {
                let spath = with(with(path.clone(), k("steps")), Seg::Index(i));
                let sretry = merge_retry(retry, st.retry.as_ref());
                if st.retry.is_some() {
                    check_retry(cx, with(spath.clone(), k("retry")), sretry);
                }
                if let Some(step) = self.step(
                    cx,
                    &spath,
                    st.strategy.as_deref(),
                    &st.targets,
                    project,
                    endpoint,
                    sretry,
                ) {
                    out.push(step);
                }
            }
            return Some(RouteBody::Steps(out));
        }
        if let Some(models) = spec.inline_models {
            let mut targets = Vec::new();
            for (i, m) in models.iter().enumerate() {
                let mpath = with(with(path.clone(), k("models")), Seg::Index(i));
                if let Some(t) =
                    self.model_target(cx, &mpath, &format!("{owner}/{m}"), m, project, endpoint)
                {
                    let weight = t.weight;
                    targets.push(WeightedTarget {
                        target: Arc::new(t),
                        weight,
                    });
                }
            }
            // Judged by the models written (one in error is reported already).
            let strategy = self.strategy(cx, &path, strategy, models.len(), Strategy::Fallback)?;
            self.check_weights(cx, &path, strategy, &targets, models.len());
            return Some(RouteBody::Steps(vec![Step {
                strategy,
                targets,
                retry,
            }]));
        }
        let refs = spec.targets.unwrap_or_default();
        let step = self.step(cx, &path, strategy, refs, project, endpoint, retry)?;
        Some(RouteBody::Steps(vec![step]))
    }

    fn strategy(
        &self,
        cx: &mut Ctx<'_>,
        path: &[Seg],
        s: Option<&str>,
        n: usize,
        multi_default: Strategy,
    ) -> Option<Strategy> {
        let spath = with(path.to_vec(), k("strategy"));
        let strategy = match s {
            None if n <= 1 => Strategy::Single,
            None => multi_default,
            Some("single") => Strategy::Single,
            Some("weighted") => Strategy::Weighted,
            Some("fallback") => Strategy::Fallback,
            Some("experiment") => {
                cx.err(spath, "strategy \"experiment\" needs `variants`");
                return None;
            }
            Some(other) => {
                cx.err(
                    spath,
                    format!("unknown strategy '{other}' (single, weighted, fallback, experiment)"),
                );
                return None;
            }
        };
        if n == 0 {
            cx.err(
                with(path.to_vec(), k("targets")),
                "needs at least one target",
            );
            return None;
        }
        if strategy == Strategy::Single && n != 1 {
            cx.err(
                spath,
                format!("strategy \"single\" takes exactly one target, found {n}"),
            );
            return None;
        }
        Some(strategy)
    }

    fn check_weights(
        &self,
        cx: &mut Ctx<'_>,
        path: &[Seg],
        strategy: Strategy,
        targets: &[WeightedTarget],
        written: usize,
    ) {
        // Judged only when every target resolved (a target in error is already reported,
        // and its weight is not in `targets`).
        if strategy == Strategy::Weighted
            && targets.len() == written
            && targets.iter().all(|t| t.weight == 0)
        {
            cx.err(
                with(path.to_vec(), k("targets")),
                "all target weights are zero",
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        cx: &mut Ctx<'_>,
        path: &[Seg],
        strategy: Option<&str>,
        refs: &[RawTargetRef],
        project: &str,
        endpoint: EndpointKind,
        retry: RetryPolicy,
    ) -> Option<Step> {
        let mut targets = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            let tpath = with(with(path.to_vec(), k("targets")), Seg::Index(i));
            let (name, weight) = match r {
                RawTargetRef::Name(n) => (n, None),
                RawTargetRef::Weighted(w) => (&w.target, w.weight),
            };
            let Some((tproj, t)) = self.targets.get(name) else {
                cx.err(tpath, self.missing_target(name));
                continue;
            };
            if tproj != project {
                cx.err(
                    tpath,
                    format!("target '{name}' belongs to another project, not '{project}'"),
                );
                continue;
            }
            if t.endpoint != endpoint {
                cx.err(
                    tpath,
                    format!(
                        "target '{name}' serves {} (model '{}'), but this route serves {endpoint}",
                        t.endpoint, t.model
                    ),
                );
                continue;
            }
            self.used.insert(name.clone());
            targets.push(WeightedTarget {
                target: t.clone(),
                weight: weight.unwrap_or(t.weight),
            });
        }
        let n = refs.len();
        let strategy = self.strategy(cx, path, strategy, n, Strategy::Fallback)?;
        self.check_weights(cx, path, strategy, &targets, n);
        Some(Step {
            strategy,
            targets,
            retry,
        })
    }

    /// A target made from a provider model (`model` or `provider::model`), with the provider's credential.
    fn model_target(
        &self,
        cx: &mut Ctx<'_>,
        path: &[Seg],
        name: &str,
        spec: &str,
        project: &str,
        endpoint: EndpointKind,
    ) -> Option<Target> {
        let (named, model) = match spec.split_once("::") {
            Some((prov, _)) if prov == "route" || prov == "function" => {
                cx.err(path.to_vec(), format!("'{spec}' names a {prov}; a variant or inline model must be a provider model"));
                return None;
            }
            Some((prov, m)) => (Some(prov), m),
            None => (None, spec),
        };
        let bp = find_provider(
            cx,
            self.providers,
            project,
            named,
            model,
            path.to_vec(),
            true,
        )?;
        let kind = (self.model_kind)(model);
        if kind != endpoint {
            cx.err(
                path.to_vec(),
                format!("model '{model}' is {kind}, but this route serves {endpoint}"),
            );
            return None;
        }
        let provider = bp.provider.clone();
        let auth = match &provider.credential {
            Some(s) => TargetAuth::Credential(s.clone()),
            None => TargetAuth::None,
        };
        let info = self.models.get(model);
        let timeouts = info
            .map(|i| i.timeouts)
            .unwrap_or_default()
            .over(bp.timeouts)
            .finish();
        Some(Target {
            credential_header: crate::model::credential_header(&provider, &auth),
            request_head: std::sync::OnceLock::new(),
            urls: target_urls(&bp.provider, None, model),
            model_header: header_value(model),
            name: name.to_string(),
            transport: provider.transport.clone(),
            provider,
            model: model.to_string(),
            auth,
            weight: 1,
            deployment: None,
            endpoint: kind,
            timeouts,
            price: crate::pricing::resolve(info.map(|i| i.price), model),
            passthrough: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn variant(
        &mut self,
        cx: &mut Ctx<'_>,
        path: &[Seg],
        owner: &str,
        vname: &str,
        project: &str,
        endpoint: EndpointKind,
        rv: &RawVariant,
    ) -> Option<Variant> {
        // Its params are checked even when its target is in error (every error in one run).
        let target: Option<Arc<Target>> = match (&rv.target, &rv.model) {
            (Some(_), Some(_)) | (None, None) => {
                cx.err(
                    path.to_vec(),
                    "a variant needs exactly one of `target` or `model`",
                );
                None
            }
            (Some(t), None) => {
                let tpath = with(path.to_vec(), k("target"));
                match self.targets.get(t) {
                    None => {
                        cx.err(tpath, self.missing_target(t));
                        None
                    }
                    Some((tproj, _)) if tproj != project => {
                        cx.err(
                            tpath,
                            format!("target '{t}' belongs to another project, not '{project}'"),
                        );
                        None
                    }
                    Some((_, target)) if target.endpoint != endpoint => {
                        cx.err(
                            tpath,
                            format!(
                                "target '{t}' serves {}, but this route serves {endpoint}",
                                target.endpoint
                            ),
                        );
                        None
                    }
                    Some((_, target)) => {
                        let target = target.clone();
                        self.used.insert(t.clone());
                        Some(target)
                    }
                }
            }
            (None, Some(m)) => {
                let mpath = with(path.to_vec(), k("model"));
                self.model_target(
                    cx,
                    &mpath,
                    &format!("{owner}/{vname}"),
                    m,
                    project,
                    endpoint,
                )
                .map(Arc::new)
            }
        };
        let mut params = serde_json::Map::new();
        let num = |v: f64| serde_json::Number::from_f64(v).map(serde_json::Value::Number);
        // Values no OpenAI-compatible upstream takes: every request of the variant would come
        // back a 400 (answered, never retried), so they are refused here. The ranges are
        // OpenAI's.
        let mut range = |key: &str, v: Option<f64>, lo: f64, hi: f64| {
            if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
                cx.err(
                    with(path.to_vec(), k(key)),
                    format!("{v} is out of range: `{key}` is between {lo} and {hi}"),
                );
            }
        };
        range("temperature", rv.temperature, 0.0, 2.0);
        range("top_p", rv.top_p, 0.0, 1.0);
        range("presence_penalty", rv.presence_penalty, -2.0, 2.0);
        range("frequency_penalty", rv.frequency_penalty, -2.0, 2.0);
        for (key, v) in [
            ("max_tokens", rv.max_tokens),
            ("max_completion_tokens", rv.max_completion_tokens),
        ] {
            if v == Some(0) {
                cx.err(
                    with(path.to_vec(), k(key)),
                    format!("`{key}` must be at least 1"),
                );
            }
        }
        if let Some(e) = rv.reasoning_effort.as_deref()
            && !["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e)
        {
            cx.err(
                with(path.to_vec(), k("reasoning_effort")),
                format!("unknown reasoning_effort '{e}' (none, minimal, low, medium, high, xhigh)"),
            );
        }
        if let Some(v) = &rv.response_format
            && !v
                .as_table()
                .is_some_and(|t| t.get("type").is_some_and(|t| t.is_str()))
        {
            cx.err(
                with(path.to_vec(), k("response_format")),
                "`response_format` is a table with a `type` (e.g. { type = \"json_object\" })",
            );
        }
        if let Some(v) = rv.temperature.and_then(num) {
            params.insert("temperature".into(), v);
        }
        if let Some(v) = rv.top_p.and_then(num) {
            params.insert("top_p".into(), v);
        }
        if let Some(v) = rv.max_tokens {
            params.insert("max_tokens".into(), v.into());
        }
        if let Some(v) = rv.max_completion_tokens {
            params.insert("max_completion_tokens".into(), v.into());
        }
        if let Some(v) = rv.seed {
            params.insert("seed".into(), v.into());
        }
        if let Some(v) = &rv.stop {
            match toml_to_json(v) {
                s @ serde_json::Value::String(_) => {
                    params.insert("stop".into(), s);
                }
                serde_json::Value::Array(a) if a.iter().all(|x| x.is_string()) => {
                    params.insert("stop".into(), serde_json::Value::Array(a));
                }
                _ => cx.err(
                    with(path.to_vec(), k("stop")),
                    "`stop` is a string or an array of strings",
                ),
            }
        }
        if let Some(v) = rv.presence_penalty.and_then(num) {
            params.insert("presence_penalty".into(), v);
        }
        if let Some(v) = rv.frequency_penalty.and_then(num) {
            params.insert("frequency_penalty".into(), v);
        }
        if let Some(v) = &rv.reasoning_effort {
            params.insert("reasoning_effort".into(), v.clone().into());
        }
        if let Some(v) = &rv.response_format {
            params.insert("response_format".into(), toml_to_json(v));
        }
        if let Some(extra) = &rv.params {
            for (key, v) in extra {
                let ppath = with(with(path.to_vec(), k("params")), k(key));
                if RESERVED_PARAMS.contains(&key.as_str()) {
                    cx.err(ppath, format!("a variant may not override `{key}`"));
                } else if VARIANT_PARAMS.contains(&key.as_str()) {
                    cx.err(
                        ppath,
                        format!("`{key}` is a plain variant key; set it outside `params`"),
                    );
                } else {
                    params.insert(key.clone(), toml_to_json(v));
                }
            }
        }
        // The plain keys are chat completions' parameters: on another endpoint they would be
        // sent into a body that has no such field; a translating adapter refuses some of
        // them outright. Either way every request of the variant would be refused.
        // Where a param is written: a plain key of the variant, or under its `params`.
        let key_path = |key: &str| match VARIANT_PARAMS.contains(&key) {
            true => with(path.to_vec(), k(key)),
            false => with(with(path.to_vec(), k("params")), k(key)),
        };
        if endpoint == EndpointKind::AudioTranscription {
            // An upload goes upstream as it came: there is no JSON body to set a field in.
            for key in params.keys() {
                cx.err(
                    key_path(key),
                    "variants of an audio_transcription route take no params: an upload goes upstream as the caller sent it",
                );
            }
        } else if endpoint != EndpointKind::Chat {
            for key in params
                .keys()
                .filter(|k| VARIANT_PARAMS.contains(&k.as_str()))
            {
                cx.err(
                    with(path.to_vec(), k(key)),
                    format!(
                        "`{key}` is a chat completions parameter and this route serves {endpoint}; set a field of {endpoint} under `params = {{ ... }}`"
                    ),
                );
            }
        }
        let target = target?;
        // What a translating adapter refuses outright: its own request translation decides.
        if endpoint == EndpointKind::Chat
            && let Err(e) =
                crate::providers::refused_params(target.provider.kind, &target.provider.id, &params)
        {
            let at = match e.param.as_deref() {
                Some(key) if params.contains_key(key) => key_path(key),
                _ => path.to_vec(),
            };
            cx.err(at, e.message);
        }
        Some(Variant {
            name: vname.to_string(),
            target,
            weight: rv.weight.unwrap_or(1),
            params,
        })
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

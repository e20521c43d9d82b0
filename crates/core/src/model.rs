//! Validated configuration: the types a request reads. Built only by `config::validate`,
//! so a value of these types cannot be wrong (every reference resolved, every weight sane).

use crate::providers::Transport;
use http::HeaderMap;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What an endpoint does; routes, functions and models are tied to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    Chat,
    Embeddings,
    AudioSpeech,
    AudioTranscription,
    ImageGeneration,
}

impl EndpointKind {
    pub const ALL: [EndpointKind; 5] = [
        EndpointKind::Chat,
        EndpointKind::Embeddings,
        EndpointKind::AudioSpeech,
        EndpointKind::AudioTranscription,
        EndpointKind::ImageGeneration,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Chat => "chat",
            EndpointKind::Embeddings => "embeddings",
            EndpointKind::AudioSpeech => "audio_speech",
            EndpointKind::AudioTranscription => "audio_transcription",
            EndpointKind::ImageGeneration => "image_generation",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// The endpoint(s) a caller uses for this kind, for error messages.
    pub fn endpoint_hint(self) -> &'static str {
        match self {
            EndpointKind::Chat => "POST /v1/chat/completions",
            EndpointKind::Embeddings => "POST /v1/embeddings",
            EndpointKind::AudioSpeech => "POST /v1/audio/speech",
            EndpointKind::AudioTranscription => "POST /v1/audio/transcriptions",
            EndpointKind::ImageGeneration => "POST /v1/images/generations",
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    /// OpenAI's wire format at deployment-based URLs with an `api-key` header.
    AzureOpenAi,
    /// Anthropic's Messages API, translated.
    Anthropic,
    /// Google's Gemini API, translated.
    Gemini,
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::AzureOpenAi => "azure-openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mock => "mock",
        }
    }
    /// Whether `POST /v1/responses` can go to this kind as it is (no translation yet).
    pub fn serves_responses_api(self) -> bool {
        match self {
            ProviderKind::OpenAi | ProviderKind::Mock => true,
            ProviderKind::AzureOpenAi | ProviderKind::Anthropic | ProviderKind::Gemini => false,
        }
    }

    pub fn serves(self, kind: EndpointKind) -> bool {
        match self {
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi => true,
            ProviderKind::Mock => !matches!(kind, EndpointKind::AudioTranscription),
            // The native adapters translate chat completions only.
            ProviderKind::Anthropic | ProviderKind::Gemini => kind == EndpointKind::Chat,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    Bearer,
    ApiKeyHeader,
    QueryParam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughMode {
    CallerKey,
    Credential,
    Off,
}

/// Timeouts after merging defaults, provider, model and target (most specific wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until response headers (for non-streaming calls, the whole answer). `None`: the request deadline.
    pub headers: Option<Duration>,
    pub first_byte: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_millis(8000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached_input: Option<f64>,
}

pub struct Provider {
    pub id: String,
    pub project: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Full upstream URLs for the endpoint paths, parsed once (URL parsing is costly).
    pub urls: Vec<(&'static str, reqwest::Url, http::Uri)>,
    pub models: Vec<String>,
    pub credential: Option<Secret>,
    pub passthrough: PassthroughMode,
    pub auth_type: AuthType,
    pub auth_header_name: http::HeaderName,
    pub api_version: Option<String>,
    pub headers: HeaderMap,
    pub mock_latency: Duration,
    pub transport: Transport,
    /// `x-signalbox-provider`, and `passthrough:ID` for `x-signalbox-route`, built once.
    pub id_header: http::HeaderValue,
    /// `Host` for HTTP/1 requests (host, and port unless the scheme's default), built once
    /// instead of formatted by the HTTP client on every request.
    pub host_header: Option<http::HeaderValue>,
    pub passthrough_label: String,
    pub passthrough_label_header: http::HeaderValue,
}

/// Paths under a provider's base URL that the gateway calls.
pub const UPSTREAM_PATHS: &[&str] = &[
    "/chat/completions",
    "/embeddings",
    "/images/generations",
    "/audio/speech",
    "/audio/transcriptions",
    "/audio/translations",
    "/responses",
    // Anthropic's Messages API.
    "/messages",
];

impl Provider {
    /// The upstream URL for a path, from the pre-parsed set when possible.
    pub fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        match self.urls.iter().find(|(p, _, _)| *p == path) {
            Some((_, u, _)) => Ok(u.clone()),
            None => reqwest::Url::parse(&format!("{}{}", self.base_url, path))
                .map_err(|_| "invalid upstream URL".to_string()),
        }
    }

    /// The same as an `http::Uri`, for the direct client.
    pub fn uri(&self, path: &str) -> Result<http::Uri, String> {
        match self.urls.iter().find(|(p, _, _)| *p == path) {
            Some((_, _, u)) => Ok(u.clone()),
            None => format!("{}{}", self.base_url, path)
                .parse()
                .map_err(|_| "invalid upstream URL".to_string()),
        }
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// How an attempt authenticates upstream.
#[derive(Debug, Clone)]
pub enum TargetAuth {
    /// The gateway's own credential (managed layer).
    Credential(Secret),
    /// No credential configured (e.g. a local server that needs none).
    None,
    /// The caller's own provider key, forwarded unchanged (passthrough `caller_key`).
    Caller,
}

/// One concrete landing place: provider + model + credential.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub provider: Arc<Provider>,
    pub model: String,
    pub auth: TargetAuth,
    pub weight: u32,
    pub deployment: Option<String>,
    pub endpoint: EndpointKind,
    pub timeouts: Timeouts,
    pub price: Price,
    pub transport: Transport,
    /// Upstream URLs of this target when they depend on it (Azure deployments); empty means
    /// the provider's.
    pub urls: Vec<(&'static str, reqwest::Url, http::Uri)>,
    /// `x-signalbox-model` when the upstream does not name the model that answered.
    pub model_header: http::HeaderValue,
    /// True when reached by passthrough (the caller's failures stay the caller's).
    pub passthrough: bool,
    /// The credential header's value when the gateway's own credential goes in a header
    /// (`bearer`, `api_key_header`), built once; marked sensitive.
    pub credential_header: Option<http::HeaderValue>,
    /// The upstream request headers every JSON request to this target starts with (for a
    /// non-streaming and a streaming request), built at its first request: cloning them costs
    /// a fraction of inserting them one by one (see `providers::openai::request_headers`).
    pub request_head: std::sync::OnceLock<[http::HeaderMap; 2]>,
}

/// The value of the credential header for a target's auth, if it goes in a header.
pub fn credential_header(provider: &Provider, auth: &TargetAuth) -> Option<http::HeaderValue> {
    let TargetAuth::Credential(key) = auth else {
        return None;
    };
    let mut v = match provider.auth_type {
        AuthType::Bearer => http::HeaderValue::try_from(format!("Bearer {}", key.expose())).ok()?,
        AuthType::ApiKeyHeader => http::HeaderValue::try_from(key.expose()).ok()?,
        AuthType::QueryParam => return None,
    };
    v.set_sensitive(true);
    Some(v)
}

/// `Host` for a plain-`http` base URL as HTTP/1 clients send it: the host, with the port
/// only when it is not 80. `None` for `https`, where ALPN may pick HTTP/2 (whose authority
/// travels as `:authority`), so the client still sets `Host` itself when it speaks HTTP/1.
pub fn host_header(base_url: &str) -> Option<http::HeaderValue> {
    let uri = base_url.parse::<http::Uri>().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?;
    let value = match uri.port_u16() {
        Some(port) if port != 80 => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    http::HeaderValue::try_from(value).ok()
}

impl Target {
    pub fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        match self.urls.iter().find(|(p, _, _)| *p == path) {
            Some((_, u, _)) => Ok(u.clone()),
            None if self.urls.is_empty() => self.provider.url(path),
            None => Err(format!("no upstream URL for {path}")),
        }
    }

    pub fn uri(&self, path: &str) -> Result<http::Uri, String> {
        match self.urls.iter().find(|(p, _, _)| *p == path) {
            Some((_, _, u)) => Ok(u.clone()),
            None if self.urls.is_empty() => self.provider.uri(path),
            None => Err(format!("no upstream URL for {path}")),
        }
    }
}

/// URLs of a Gemini model: `{base}/models/{model}:generateContent` under the pseudo-path
/// `/chat/completions`, and `:streamGenerateContent?alt=sse` under `/chat/completions#stream`.
pub fn gemini_urls(base_url: &str, model: &str) -> Vec<(&'static str, reqwest::Url, http::Uri)> {
    [
        (crate::providers::gemini::GENERATE, "generateContent", false),
        (
            crate::providers::gemini::STREAM,
            "streamGenerateContent",
            true,
        ),
    ]
    .into_iter()
    .filter_map(|(key, method, sse)| {
        let mut url = reqwest::Url::parse(base_url).ok()?;
        {
            let mut segs = url.path_segments_mut().ok()?;
            segs.pop_if_empty()
                .extend(["models", &format!("{model}:{method}")]);
        }
        if sse {
            url.query_pairs_mut().append_pair("alt", "sse");
        }
        let uri = url.as_str().parse::<http::Uri>().ok()?;
        Some((key, url, uri))
    })
    .collect()
}

/// URLs of an Azure OpenAI deployment: `{base}/openai/deployments/{deployment}{path}?api-version=V`,
/// the deployment name escaped as a path segment.
pub fn azure_urls(
    base_url: &str,
    deployment: &str,
    api_version: &str,
) -> Vec<(&'static str, reqwest::Url, http::Uri)> {
    UPSTREAM_PATHS
        .iter()
        .filter_map(|path| {
            let mut url = reqwest::Url::parse(base_url).ok()?;
            {
                let mut segs = url.path_segments_mut().ok()?;
                segs.pop_if_empty()
                    .extend(["openai", "deployments", deployment]);
                segs.extend(path.trim_start_matches('/').split('/'));
            }
            url.query_pairs_mut()
                .append_pair("api-version", api_version);
            let uri = url.as_str().parse::<http::Uri>().ok()?;
            Some((*path, url, uri))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Single,
    Weighted,
    Fallback,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Single => "single",
            Strategy::Weighted => "weighted",
            Strategy::Fallback => "fallback",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WeightedTarget {
    pub target: Arc<Target>,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub strategy: Strategy,
    pub targets: Vec<WeightedTarget>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky {
    None,
    User,
    Session,
}

#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub target: Arc<Target>,
    pub weight: u32,
    /// Generation params that override the caller's.
    pub params: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
pub enum RouteBody {
    Steps(Vec<Step>),
    Experiment {
        variants: Vec<Arc<Variant>>,
        sticky: Sticky,
        retry: RetryPolicy,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLayer {
    Route,
    Function,
    /// A bare target that no route uses: an implicit direct route for its model.
    ImplicitTarget,
}

/// A route, a function, or the implicit route of a bare target.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub layer: RouteLayer,
    pub endpoint: EndpointKind,
    pub models: Vec<String>,
    pub body: Arc<RouteBody>,
    /// For a function pointing at a route: that route's name.
    pub via_route: Option<String>,
    pub version: u64,
    /// The `x-signalbox-route` value (`route:NAME`, `function:NAME`, `target:NAME`), built once.
    pub label: String,
    pub label_header: http::HeaderValue,
}

/// A header value for a name the config validated (letters, digits and a few marks).
/// A name (model, variant) as a response header value: visible ASCII as it is; any other
/// byte, and `%` itself, percent-encoded (`é` is `%C3%A9`), so the value is plain ASCII that
/// every client reads the same way.
pub fn header_value(s: &str) -> http::HeaderValue {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    let v = if s.bytes().all(plain) {
        http::HeaderValue::from_str(s)
    } else {
        let mut out = String::with_capacity(s.len() * 3);
        for b in s.bytes() {
            if plain(b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        http::HeaderValue::from_str(&out)
    };
    v.unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
}

impl Route {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        layer: RouteLayer,
        endpoint: EndpointKind,
        models: Vec<String>,
        body: Arc<RouteBody>,
        via_route: Option<String>,
        version: u64,
    ) -> Route {
        let label = match layer {
            RouteLayer::Route => format!("route:{name}"),
            RouteLayer::Function => format!("function:{name}"),
            RouteLayer::ImplicitTarget => format!("target:{name}"),
        };
        Route {
            label_header: header_value(&label),
            label,
            name,
            layer,
            endpoint,
            models,
            body,
            via_route,
            version,
        }
    }
}

/// Everything one project can call.
#[derive(Debug, Default)]
pub struct ProjectSnapshot {
    pub name: String,
    pub routes: BTreeMap<String, Arc<Route>>,
    pub functions: BTreeMap<String, Arc<Route>>,
    /// (endpoint, bare model) -> route whose `models` list has it.
    pub route_models: HashMap<(EndpointKind, String), Arc<Route>>,
    /// bare model -> implicit route of the unused targets for that model.
    pub implicit: BTreeMap<String, Arc<Route>>,
    pub providers: BTreeMap<String, Arc<Provider>>,
    /// (provider id, model) -> passthrough target, for every model a provider lists.
    pub passthrough: HashMap<(String, String), Arc<Target>>,
    /// bare model -> providers listing it, in id order.
    pub provider_models: HashMap<String, Vec<Arc<Provider>>>,
    /// Endpoint kind of each model named by `[models.NAME]` (others are chat).
    pub model_kinds: HashMap<String, EndpointKind>,
    /// Traces of this project keep request and answer text (capped).
    pub capture_content: bool,
}

impl ProjectSnapshot {
    /// Where each managed credential is sent: (the secret, the upstream origin it goes to,
    /// what sends it there), for every provider's own credential and every target's (in
    /// routes, functions and bare targets' implicit routes).
    pub fn credential_destinations(&self) -> Vec<(&str, String, String)> {
        let origin = |p: &Provider| {
            reqwest::Url::parse(&p.base_url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| p.base_url.clone())
        };
        let mut out = Vec::new();
        for p in self.providers.values() {
            if let Some(s) = &p.credential {
                out.push((s.expose(), origin(p), format!("provider '{}'", p.id)));
            }
        }
        let routes = self.routes.values();
        for r in routes
            .chain(self.functions.values())
            .chain(self.implicit.values())
        {
            let targets: Vec<&Arc<Target>> = match &*r.body {
                RouteBody::Steps(steps) => steps
                    .iter()
                    .flat_map(|s| s.targets.iter().map(|w| &w.target))
                    .collect(),
                RouteBody::Experiment { variants, .. } => {
                    variants.iter().map(|v| &v.target).collect()
                }
            };
            for t in targets {
                if let TargetAuth::Credential(s) = &t.auth {
                    out.push((
                        s.expose(),
                        origin(&t.provider),
                        format!("target '{}'", t.name),
                    ));
                }
            }
        }
        out
    }

    pub fn model_kind(&self, model: &str) -> EndpointKind {
        self.model_kinds
            .get(model)
            .copied()
            .unwrap_or(EndpointKind::Chat)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Keys,
    Off,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub auth: AuthMode,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    pub max_in_flight: usize,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    /// How long a connection may take to send a request's headers (and stay idle between
    /// requests). Read at start.
    pub header_read_timeout: Duration,
    pub admin_listen: String,
    pub metrics_token: Option<Secret>,
    pub allow_link_local_upstreams: bool,
}

#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub id: String,
    pub project: String,
    /// Unix milliseconds from which the key no longer works (expiry, or the end of a
    /// rotation's grace).
    pub expires_at_ms: Option<i64>,
}

impl KeyEntry {
    pub fn expired(&self) -> bool {
        self.expires_at_ms.is_some_and(|t| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(i64::MAX);
            now >= t
        })
    }
}

/// Keyed hash of gateway keys (HMAC-SHA256): a leaked table of hashes cannot be checked
/// offline against guesses without the key, which the store keeps encrypted.
/// Holds the keyed state prepared once, so a request pays two compressions, not four.
#[derive(Clone)]
pub struct KeyHasher(hmac::Hmac<sha2::Sha256>);

impl KeyHasher {
    pub fn new(key: [u8; 32]) -> KeyHasher {
        use hmac::digest::KeyInit;
        // HMAC pads a short key with zeros to the block size; doing it here makes `new` infallible.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        KeyHasher(hmac::Hmac::<sha2::Sha256>::new(&block.into()))
    }

    /// A key of this process only: for a config without a store.
    pub fn random() -> KeyHasher {
        KeyHasher::new(rand::random())
    }

    pub fn hash(&self, key: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(***)")
    }
}

/// The whole live configuration. Requests load one `Arc<Snapshot>` and never a lock.
#[derive(Debug)]
pub struct Snapshot {
    pub server: ServerSettings,
    pub projects: HashMap<String, ProjectSnapshot>,
    /// Keyed hash of a gateway key -> its entry.
    pub keys: HashMap<[u8; 32], KeyEntry>,
    pub key_hasher: KeyHasher,
    pub version: u64,
    /// `[routing.retry]`: the policy of passthrough calls and the base of every route's.
    pub default_retry: RetryPolicy,
}

impl Snapshot {
    pub fn project(&self, name: &str) -> Option<&ProjectSnapshot> {
        self.projects.get(name)
    }
}

impl Snapshot {
    /// The entry of a gateway key that works now (known, not expired).
    pub fn key(&self, key: &str) -> Option<&KeyEntry> {
        self.keys
            .get(&self.key_hasher.hash(key))
            .filter(|e| !e.expired())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_is_host_and_port_unless_default_and_left_to_the_client_for_https() {
        let h = |u: &str| host_header(u).map(|v| v.to_str().unwrap_or_default().to_string());
        assert_eq!(
            h("http://127.0.0.1:9000/v1").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(h("http://llm.internal/v1").as_deref(), Some("llm.internal"));
        assert_eq!(
            h("http://llm.internal:80/v1").as_deref(),
            Some("llm.internal")
        );
        assert_eq!(h("http://[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(h("https://api.openai.com/v1"), None);
    }
}

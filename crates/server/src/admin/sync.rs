//! Keeping nodes in step with the store, and the provider checks of admin writes.

use super::AdminError;
use crate::live::Live;
use serde_json::{Value, json};
use signalbox_core::model::{AuthType, Provider, ProviderKind};
use signalbox_store::{Backend, NOTIFY_CHANNEL, Store};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a node compares its store version with the store's: the safety net under
/// PostgreSQL's notifications, and the only path on SQLite (several processes on one file).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Follow the store: rebuild and swap the snapshot whenever its version moves. A store that
/// is away is logged once; the last good config keeps serving until it returns.
pub fn follow(store: Arc<Store>, live: Arc<Live>, pg_url: Option<String>, stop: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    if let (Backend::Postgres, Some(url)) = (store.backend(), pg_url) {
        let tx = tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move { listen(url, tx, stop).await });
    }
    tokio::spawn(async move {
        // A store version this node could not apply, and the live version it was tried on:
        // not retried every tick, only once something changes.
        let mut rejected: Option<(i64, u64)> = None;
        loop {
            // On SQLite nothing sends: the closed channel's `None` must not end the wait
            // (it would poll the store in a busy loop), so only a real wake-up counts.
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = rx.recv() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            match refresh_once(&store, &live, rejected).await {
                Ok(Refresh::Rejected(v, errs)) => {
                    live.set_store_reachable(true);
                    tracing::error!(
                        store_version = v,
                        "the store's config does not validate with this node's config file; keeping the last good config:\n{errs}"
                    );
                    rejected = Some((v, live.version()));
                    // Out of step with the other nodes (a key revoked since is not revoked
                    // here): not ready until a change fits again.
                    live.set_store_in_sync(false);
                }
                Ok(Refresh::Applied(_)) => {
                    rejected = None;
                    live.set_store_in_sync(true);
                    if !live.store_reachable() {
                        tracing::info!("store reachable again");
                    }
                    live.set_store_reachable(true);
                }
                Ok(Refresh::Unchanged) => {
                    if !live.store_reachable() {
                        tracing::info!("store reachable again");
                    }
                    live.set_store_reachable(true);
                }
                Err(e) => {
                    if live.store_reachable() {
                        tracing::error!("store unreachable, serving the last good config: {e}");
                    }
                    live.set_store_reachable(false);
                }
            }
        }
    });
}

pub enum Refresh {
    Unchanged,
    Applied(i64),
    Rejected(i64, String),
}

/// Rebuild from the store if it moved on. Err: the store could not be read.
pub async fn refresh(store: &Store, live: &Live) -> Result<bool, String> {
    match refresh_once(store, live, None).await? {
        Refresh::Applied(_) => Ok(true),
        Refresh::Unchanged => Ok(false),
        Refresh::Rejected(_, e) => Err(e),
    }
}

async fn refresh_once(
    store: &Store,
    live: &Live,
    rejected: Option<(i64, u64)>,
) -> Result<Refresh, String> {
    let v = store.config_version().await.map_err(|e| e.to_string())?;
    if v <= live.store_version() || rejected == Some((v, live.version())) {
        return Ok(Refresh::Unchanged);
    }
    let (catalog, version) = store.load_catalog().await.map_err(|e| e.to_string())?;
    match live.apply_catalog(catalog, version) {
        Ok(true) => {
            tracing::info!(store_version = version, "store change applied");
            Ok(Refresh::Applied(version))
        }
        Ok(false) => Ok(Refresh::Unchanged),
        Err(errs) => Ok(Refresh::Rejected(version, errs.to_string())),
    }
}

async fn listen(url: String, tx: tokio::sync::mpsc::Sender<()>, stop: CancellationToken) {
    use sqlx::postgres::PgListener;
    loop {
        if stop.is_cancelled() {
            return;
        }
        match PgListener::connect(&url).await {
            Ok(mut l) => {
                if l.listen(NOTIFY_CHANNEL).await.is_ok() {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            n = l.recv() => match n {
                                Ok(_) => { let _ = tx.try_send(()); }
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("store notifications unavailable: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

use signalbox_core::providers::transport::forbidden_ip;

/// Refuse a provider `base_url` that points at a link-local or metadata address (by literal,
/// by well-known name, or by what the name resolves to now) unless the server allows it.
pub async fn check_provider_address(body: &Value, allow: bool) -> Result<(), AdminError> {
    if allow {
        return Ok(());
    }
    let Some(url) = body.get("base_url").and_then(Value::as_str) else {
        return Ok(());
    };
    let bad = || {
        AdminError::bad_request(
            "base_url points at a link-local or cloud-metadata address; set [server] allow_link_local_upstreams = true to allow it",
        )
        .with_param("base_url")
    };
    let Ok(parsed) = url.parse::<http::Uri>() else {
        return Err(AdminError::bad_request("base_url is not a valid URL").with_param("base_url"));
    };
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err(
            AdminError::bad_request("base_url must be an http:// or https:// URL")
                .with_param("base_url"),
        );
    }
    let Some(host) = parsed.host() else {
        return Err(AdminError::bad_request("base_url has no host").with_param("base_url"));
    };
    // A fully qualified name's trailing dot names the same host (`169.254.169.254.`).
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if matches!(
        host.as_str(),
        "metadata.google.internal" | "metadata" | "metadata.azure.com" | "instance-data"
    ) {
        return Err(bad());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if forbidden_ip(ip) { Err(bad()) } else { Ok(()) };
    }
    let port = parsed.port_u16().unwrap_or(443);
    let resolved = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await;
    if let Ok(Ok(addrs)) = resolved {
        for a in addrs {
            if forbidden_ip(a.ip()) {
                return Err(bad());
            }
        }
    }
    Ok(())
}

/// "Test connection": list the provider's models with its credential. Answers only a status
/// and model ids, never the upstream's body or headers.
/// A resolver for the test connection's client that refuses link-local and metadata
/// addresses, as the provider's own transport does when guarded.
struct GuardedDns;

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = signalbox_core::providers::transport::allowed_addrs(found, true)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub async fn test_connection(p: &Provider, guarded: bool) -> Value {
    match p.kind {
        ProviderKind::Mock => return json!({"status": "ok", "models": p.models}),
        ProviderKind::AzureOpenAi => {
            return json!({"status": "unsupported", "message": "Azure OpenAI lists deployments, not models; call a route to test it", "models": []});
        }
        ProviderKind::OpenAi | ProviderKind::Anthropic | ProviderKind::Gemini => {}
    }
    let mut url = format!("{}/models", p.base_url.trim_end_matches('/'));
    // One page with every model: Anthropic and Gemini page their lists (20 and 50 a page).
    match p.kind {
        ProviderKind::Anthropic => url.push_str("?limit=1000"),
        ProviderKind::Gemini => url.push_str("?pageSize=1000"),
        _ => {}
    }
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if guarded {
        builder = builder.dns_resolver(std::sync::Arc::new(GuardedDns));
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(_) => {
            return json!({"status": "error", "message": "cannot build an HTTP client", "models": []});
        }
    };
    let mut req;
    match (&p.credential, p.auth_type) {
        (Some(c), AuthType::QueryParam) => {
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str("key=");
            url.push_str(&percent(c.expose()));
            req = client.get(&url);
        }
        (Some(c), AuthType::ApiKeyHeader) => {
            req = client
                .get(&url)
                .header(p.auth_header_name.clone(), c.expose());
        }
        (Some(c), AuthType::Bearer) => {
            req = client.get(&url).bearer_auth(c.expose());
        }
        (None, _) => req = client.get(&url),
    }
    if p.kind == ProviderKind::Anthropic {
        req = req.header("anthropic-version", "2023-06-01");
    }
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            return json!({"status": "error", "message": format!("the provider {what}"), "models": []});
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let message = match status.as_u16() {
            401 | 403 => "the provider rejected the credential",
            404 => "the provider has no /models endpoint at this base_url",
            429 => "the provider throttled the request",
            _ => "the provider answered with an error",
        };
        return json!({"status": "error", "http_status": status.as_u16(), "message": message, "models": []});
    }
    // A model list is small; refuse to read more than 4 MiB of it.
    let body: Value = match resp.bytes().await {
        Ok(b) if b.len() <= 4 << 20 => serde_json::from_slice(&b).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    // OpenAI and Anthropic: `data[].id`; Gemini: `models[].name` as `models/ID`.
    let (list, field) = match p.kind {
        ProviderKind::Gemini => ("models", "name"),
        _ => ("data", "id"),
    };
    let models: Vec<String> = body
        .get(list)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get(field).and_then(Value::as_str))
                .map(|id| id.strip_prefix("models/").unwrap_or(id).to_string())
                .collect()
        })
        .unwrap_or_default();
    json!({"status": "ok", "http_status": status.as_u16(), "models": models})
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Delete traces older than `days` (0: keep them all) now and then every hour.
pub fn retain_traces(store: Arc<Store>, days: u64, stop: CancellationToken) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            let cutoff = signalbox_store::now_millis() - (days as i64) * 86_400_000;
            match store.delete_traces_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, days, "old traces deleted"),
                Err(e) => tracing::warn!("trace retention: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    });
}

//! The pooled HTTP client of one provider (or one connect timeout of it).
//!
//! Two kinds, chosen when the snapshot is built:
//! - `Direct`: hyper-util's pooled client over rustls — keep-alive, `TCP_NODELAY`, HTTP/2 by
//!   ALPN, webpki roots plus the extra CAs of `[server] ca_bundle`. The hot path.
//! - `Proxied`: when `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (minus `NO_PROXY`) applies to the
//!   provider's base URL, reqwest, which implements proxying (CONNECT tunnels, proxy auth).

use bytes::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;

/// Request bodies: JSON in one piece, or a streamed upload.
pub type OutgoingBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;
pub type DirectClient = Client<HttpsConnector<HttpConnector>, OutgoingBody>;

#[derive(Clone, Debug)]
pub enum Transport {
    /// Shared: the client is cloned into every target of the provider.
    Direct(Arc<DirectClient>),
    Proxied(reqwest::Client),
}

/// Extra trusted CAs, parsed once for both client kinds.
#[derive(Clone, Debug, Default)]
pub struct ExtraRoots {
    der: Vec<CertificateDer<'static>>,
}

impl ExtraRoots {
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for c in &self.der {
            c.as_ref().hash(&mut h);
        }
        h.finish()
    }
}

/// What makes two transports interchangeable.
#[derive(Hash, PartialEq, Eq)]
struct Key {
    provider: String,
    base_url: String,
    connect: Duration,
    roots: u64,
}

/// Transports outlive snapshots: a config change that leaves a provider's connection
/// settings alone keeps its client, so its warm connections and TLS setup are not thrown
/// away (building a client costs far more than the rest of a snapshot). Only snapshot
/// builds touch this, never requests; entries unused for `KEEP_BUILDS` builds are dropped.
struct Reuse {
    build: u64,
    entries: std::collections::HashMap<Key, (Transport, u64)>,
}

const KEEP_BUILDS: u64 = 64;

static REUSE: std::sync::LazyLock<std::sync::Mutex<Reuse>> = std::sync::LazyLock::new(|| {
    std::sync::Mutex::new(Reuse {
        build: 0,
        entries: std::collections::HashMap::new(),
    })
});

fn reuse() -> std::sync::MutexGuard<'static, Reuse> {
    REUSE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Start a snapshot build: transports unused for a while are let go.
pub fn next_build() {
    let mut r = reuse();
    r.build += 1;
    let keep_after = r.build.saturating_sub(KEEP_BUILDS);
    r.entries.retain(|_, (_, used)| *used >= keep_after);
}

/// The transport for a provider's settings: the one earlier snapshots used when nothing
/// that shapes it changed, else a new one.
pub fn shared(
    provider: &str,
    connect_timeout: Duration,
    roots: &ExtraRoots,
    base_url: &str,
) -> Result<Transport, String> {
    let key = Key {
        provider: provider.to_string(),
        base_url: base_url.to_string(),
        connect: connect_timeout,
        roots: roots.fingerprint(),
    };
    {
        let mut r = reuse();
        let build = r.build;
        if let Some((t, used)) = r.entries.get_mut(&key) {
            *used = build;
            return Ok(t.clone());
        }
    }
    // Built outside the lock (it is the costly part); a racing build may make a twin,
    // which only costs that one client.
    let t = Transport::new(connect_timeout, roots, base_url)?;
    let mut r = reuse();
    let build = r.build;
    r.entries.insert(key, (t.clone(), build));
    Ok(t)
}

impl Transport {
    pub fn new(
        connect_timeout: Duration,
        roots: &ExtraRoots,
        base_url: &str,
    ) -> Result<Self, String> {
        let proxied = base_url.parse::<http::Uri>().ok().is_some_and(|u| {
            hyper_util::client::proxy::matcher::Matcher::from_env()
                .intercept(&u)
                .is_some()
        });
        if proxied {
            return reqwest_client(connect_timeout, roots).map(Transport::Proxied);
        }
        let mut store = rustls::RootCertStore::empty();
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &roots.der {
            store
                .add(cert.clone())
                .map_err(|e| format!("invalid CA certificate in ca_bundle: {e}"))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(store)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(Transport::Direct(Arc::new(client)))
    }
}

fn reqwest_client(
    connect_timeout: Duration,
    roots: &ExtraRoots,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        // Redirects would carry the credential to an address nobody configured.
        .redirect(reqwest::redirect::Policy::none());
    for cert in &roots.der {
        let c = reqwest::Certificate::from_der(cert)
            .map_err(|e| format!("invalid CA certificate: {e}"))?;
        builder = builder.add_root_certificate(c);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// Read a PEM bundle of extra trusted CAs.
pub fn load_ca_bundle(path: &std::path::Path) -> Result<ExtraRoots, String> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
    let der: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let der = der.map_err(|e| format!("invalid CA bundle {}: {e}", path.display()))?;
    if der.is_empty() {
        return Err(format!("CA bundle {} holds no certificate", path.display()));
    }
    Ok(ExtraRoots { der })
}

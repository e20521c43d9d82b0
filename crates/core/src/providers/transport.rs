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

//! The pooled HTTP client one provider (or one connect timeout of it) uses.

use std::time::Duration;

/// A cheap-to-clone pooled client: keep-alive, `TCP_NODELAY`, `HTTPS_PROXY`/`NO_PROXY`
/// from the environment, and the extra CAs of `[server] ca_bundle`.
#[derive(Clone, Debug)]
pub struct Transport {
    pub(crate) client: reqwest::Client,
}

impl Transport {
    pub fn new(
        connect_timeout: Duration,
        extra_roots: &[reqwest::Certificate],
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            // Redirects would carry the credential to an address nobody configured.
            .redirect(reqwest::redirect::Policy::none());
        for cert in extra_roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        builder
            .build()
            .map(|client| Transport { client })
            .map_err(|e| format!("cannot build HTTP client: {e}"))
    }
}

/// Read a PEM bundle of extra trusted CAs.
pub fn load_ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("invalid CA bundle {}: {e}", path.display()))
}

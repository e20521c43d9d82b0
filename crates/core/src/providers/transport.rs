//! The pooled HTTP client of one provider (or one connect timeout of it).
//!
//! Three kinds, chosen when the snapshot is built:
//! - `Plain`: a base URL of scheme `http` (a self-hosted server, a sidecar): the gateway's own
//!   pool of HTTP/1.1 keep-alive connections ([`PlainPool`]), `TCP_NODELAY`.
//! - `Direct`: `https`: hyper-util's pooled client over rustls — keep-alive, `TCP_NODELAY`,
//!   HTTP/2 by ALPN, webpki roots plus the extra CAs of `[server] ca_bundle`.
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

/// Link-local and cloud-metadata addresses, which a provider written through the admin API
/// may not reach (SPEC: unless `allow_link_local_upstreams`).
pub fn forbidden_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| forbidden_ip(IpAddr::V4(v4)))
                || embedded_v4(v6).is_some_and(|v4| forbidden_ip(IpAddr::V4(v4)))
                || teredo_v4s(v6)
                    .into_iter()
                    .flatten()
                    .any(|v4| forbidden_ip(IpAddr::V4(v4)))
        }
    }
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address stands for: a
/// gateway on such a network reaches it.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| {
        std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
    };
    // NAT64 (well-known and local-use prefixes), and the deprecated IPv4-compatible form.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || s[..3] == [0x64, 0xff9b, 1]
        || (s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1))
    {
        Some(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(v4(s[1], s[2]))
    } else {
        None
    }
}

/// The two IPv4 addresses a Teredo address (`2001:0::/32`) carries: its server's (bits
/// 32-63) and its client's (the last 32 bits, inverted); traffic to it is relayed to them.
fn teredo_v4s(v6: std::net::Ipv6Addr) -> [Option<std::net::Ipv4Addr>; 2] {
    let s = v6.segments();
    if s[..2] != [0x2001, 0] {
        return [None, None];
    }
    let v4 = |hi: u16, lo: u16| {
        std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
    };
    [Some(v4(s[2], s[3])), Some(v4(!s[6], !s[7]))]
}

/// The system resolver; when guarding, addresses [`forbidden_ip`] refuses are taken out of
/// every answer, at every connect (a name checked when the provider was written may resolve
/// elsewhere later), and a name left with none fails to connect.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    inner: hyper_util::client::legacy::connect::dns::GaiResolver,
    guarded: bool,
}

impl GuardedResolver {
    fn new(guarded: bool) -> Self {
        GuardedResolver {
            inner: hyper_util::client::legacy::connect::dns::GaiResolver::new(),
            guarded,
        }
    }
}

type ResolveFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<std::vec::IntoIter<std::net::SocketAddr>, std::io::Error>,
            > + Send,
    >,
>;

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for GuardedResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = ResolveFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let guarded = self.guarded;
        let resolving = self.inner.call(name);
        Box::pin(
            async move { allowed_addrs(resolving.await?.collect(), guarded).map(Vec::into_iter) },
        )
    }
}

/// What a guarded connect may use of a name's addresses: all but the forbidden ones, and an
/// error when none is left.
pub fn allowed_addrs(
    addrs: Vec<std::net::SocketAddr>,
    guarded: bool,
) -> Result<Vec<std::net::SocketAddr>, std::io::Error> {
    if !guarded {
        return Ok(addrs);
    }
    let allowed: Vec<_> = addrs
        .into_iter()
        .filter(|a| !forbidden_ip(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the provider's host resolves to a link-local or cloud-metadata address, which providers written through the admin API may not reach",
        ));
    }
    Ok(allowed)
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn a_guarded_connect_never_uses_a_metadata_or_link_local_address() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let meta = vec![
            a("169.254.169.254:80"),
            a("[fe80::1]:80"),
            a("[::ffff:169.254.169.254]:80"),
            a("100.100.100.200:80"),
        ];
        assert!(allowed_addrs(meta.clone(), true).is_err());
        assert_eq!(allowed_addrs(meta.clone(), false).unwrap(), meta);
        let translated = vec![
            a("[64:ff9b::a9fe:a9fe]:80"),
            a("[64:ff9b:1::a9fe:a9fe]:80"),
            a("[::169.254.169.254]:80"),
            a("[2002:a9fe:a9fe::]:80"),
            // Teredo: a metadata address as the server, or (inverted) as the client.
            a("[2001:0:a9fe:a9fe::]:80"),
            a("[2001:0:4136:e378:8000:63bf:5601:5601]:80"),
        ];
        for t in translated {
            assert!(
                allowed_addrs(vec![t], true).is_err(),
                "NAT64, 6to4 and Teredo forms: {t}"
            );
        }
        assert!(allowed_addrs(vec![a("[2001:0:4136:e378:8000:63bf:3fff:fdd2]:80")], true).is_ok());
        assert!(allowed_addrs(vec![a("[64:ff9b::a00:7]:80")], true).is_ok());
        let mixed = vec![a("169.254.169.254:80"), a("10.0.0.7:80")];
        assert_eq!(allowed_addrs(mixed, true).unwrap(), vec![a("10.0.0.7:80")]);
    }
}

/// Request bodies: JSON in one piece, or a streamed upload.
pub type OutgoingBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;
pub type DirectClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, OutgoingBody>;

#[derive(Clone, Debug)]
pub enum Transport {
    /// Shared: the pool is cloned into every target of the provider.
    Plain(Arc<PlainPool>),
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
    guarded: bool,
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
    guarded: bool,
) -> Result<Transport, String> {
    let key = Key {
        provider: provider.to_string(),
        base_url: base_url.to_string(),
        connect: connect_timeout,
        roots: roots.fingerprint(),
        guarded,
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
    let t = Transport::new(connect_timeout, roots, base_url, guarded)?;
    let mut r = reuse();
    let build = r.build;
    r.entries.insert(key, (t.clone(), build));
    Ok(t)
}

impl Transport {
    /// `guarded`: names are checked when connecting, and one that resolves to a link-local
    /// or cloud-metadata address is refused (providers written through the admin API).
    pub fn new(
        connect_timeout: Duration,
        roots: &ExtraRoots,
        base_url: &str,
        guarded: bool,
    ) -> Result<Self, String> {
        let proxied = base_url.parse::<http::Uri>().ok().is_some_and(|u| {
            hyper_util::client::proxy::matcher::Matcher::from_env()
                .intercept(&u)
                .is_some()
        });
        if proxied {
            return reqwest_client(connect_timeout, roots).map(Transport::Proxied);
        }
        if base_url.starts_with("http://") {
            return Ok(Transport::Plain(Arc::new(PlainPool::new(
                connect_timeout,
                guarded,
            ))));
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
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(guarded));
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

/// How long a connection may sit idle in a [`PlainPool`] before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections a [`PlainPool`] keeps at most.
const MAX_IDLE: usize = 256;

type Sender = hyper::client::conn::http1::SendRequest<OutgoingBody>;

/// The gateway's own pool of HTTP/1.1 connections to one plain-`http` upstream. hyper-util's
/// pool does the same work with more machinery (a SipHashed key per checkout and return, a
/// spawned task to return a connection whose answer is still being read): ~5k instructions a
/// request, a tenth of what the gateway spends (BENCHMARKS.md). A connection goes back to the
/// pool when its answer has been read to the end, or, when the reader stopped early, once
/// hyper has finished the answer (if it had not all arrived, hyper closes the connection).
/// Idle ones are taken newest first; those idle longer than 90 s, or closed by the server, are
/// let go.
pub struct PlainPool {
    connector: HttpConnector<GuardedResolver>,
    idle: std::sync::Mutex<Vec<(Sender, std::time::Instant)>>,
}

impl std::fmt::Debug for PlainPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainPool").finish_non_exhaustive()
    }
}

/// Why a request through a [`PlainPool`] failed.
#[derive(Debug)]
pub enum PlainError {
    /// No connection could be made (nothing was sent).
    Connect(String),
    /// The connect timeout passed (nothing was sent).
    ConnectTimeout(String),
    /// The connection failed while sending or before the answer's head.
    Send(hyper::Error),
}

impl PlainPool {
    fn new(connect_timeout: Duration, guarded: bool) -> Self {
        let mut connector = HttpConnector::new_with_resolver(GuardedResolver::new(guarded));
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        PlainPool {
            connector,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(Sender, std::time::Instant)>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection, the most recently used first.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle();
        // Oldest first: let go of those idle too long.
        let now = std::time::Instant::now();
        let stale = idle
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) > IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        while let Some((sender, _)) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((sender, std::time::Instant::now()));
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Sender, PlainError> {
        use tower_service::Service;
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(|e| {
                if timed_out(&e) {
                    PlainError::ConnectTimeout(chain(&e))
                } else {
                    PlainError::Connect(chain(&e))
                }
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| PlainError::Connect(chain(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send `req` (its URI absolute, for connecting; sent in origin form) and return the
    /// answer's head; its body hands the connection back when read to the end. A pooled
    /// connection found closed before the request went out is replaced by another (the
    /// request is sent once at most).
    ///
    /// (Written as a function returning an `async move` block: an `async fn` keeps a second
    /// copy of its by-value arguments in its state, and this state is part of every
    /// request's future.)
    #[allow(clippy::manual_async_fn)] // see the comment above
    pub fn send(
        self: &Arc<Self>,
        mut req: http::Request<OutgoingBody>,
    ) -> impl Future<Output = Result<http::Response<PooledBody>, PlainError>> {
        async move {
            let uri = req.uri().clone();
            if let Some(pq) = uri.path_and_query() {
                *req.uri_mut() = http::Uri::from(pq.clone());
            }
            loop {
                let (mut sender, reused) = match self.take() {
                    Some(s) => (s, true),
                    // Boxed: a new connection is rare, and its state would size every request's.
                    None => (Box::pin(self.connect(&uri)).await?, false),
                };
                if let Err(e) = sender.ready().await {
                    if reused {
                        continue;
                    }
                    return Err(PlainError::Send(e));
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        let (parts, body) = resp.into_parts();
                        let body = PooledBody {
                            body,
                            sender: Some(sender),
                            pool: self.clone(),
                        };
                        return Ok(http::Response::from_parts(parts, body));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if reused => req = unsent,
                        _ => return Err(PlainError::Send(e.into_error())),
                    },
                }
            }
        }
    }
}

/// An answer's body from a [`PlainPool`] connection: read to the end, it puts the connection
/// back in the pool.
pub struct PooledBody {
    body: hyper::body::Incoming,
    sender: Option<Sender>,
    pool: Arc<PlainPool>,
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None) => {
                if let Some(sender) = this.sender.take() {
                    this.pool.put(sender);
                }
            }
            // A broken connection is not reused.
            std::task::Poll::Ready(Some(Err(_))) => this.sender = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    /// Dropped before its end was read (a stream forwarded up to its last event): the
    /// connection goes back once hyper has finished the answer, as it does when the answer had
    /// all arrived; one whose answer had not, hyper closes, and it is let go.
    fn drop(&mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            let ready = tokio::time::timeout(Duration::from_secs(5), sender.ready()).await;
            if matches!(ready, Ok(Ok(()))) {
                pool.put(sender);
            }
        });
    }
}

/// An error and its sources as text.
/// Whether an error, or one it was caused by, satisfies `test`.
pub fn caused_by(
    e: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if test(err) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether an error (or one it was caused by) is an I/O timeout: a connect timeout.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by(e, |err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

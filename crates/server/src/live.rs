//! The live configuration: one `ArcSwap<Snapshot>`, replaced whole by a reload.

use arc_swap::ArcSwap;
use signalbox_core::config::{ConfigError, ConfigErrors};
use signalbox_core::model::{AuthMode, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Looks up an environment variable (injectable for tests and embedding).
pub type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Live {
    current: ArcSwap<Snapshot>,
    env: EnvFn,
    path: Option<PathBuf>,
    version: AtomicU64,
    /// Hash of the file text last applied: a change event with the same text is a no-op.
    text_digest: AtomicU64,
    /// The address actually bound (CLI flags may override the file's).
    bind_host: String,
}

/// The process environment.
pub fn process_env() -> EnvFn {
    Arc::new(|name: &str| std::env::var(name).ok())
}

impl Live {
    /// Load the first config. `path` None: an empty config (nothing routed yet).
    pub fn load(
        path: Option<&Path>,
        bind_host: Option<&str>,
        env: EnvFn,
    ) -> Result<(Live, Vec<String>), ConfigErrors> {
        let lookup = |n: &str| env(n);
        let loaded = match path {
            Some(p) => signalbox_core::load_file(p, &lookup, 1)?,
            None => signalbox_core::load_str("", None, &lookup, 1)?,
        };
        let host = bind_host
            .map(str::to_string)
            .unwrap_or_else(|| loaded.snapshot.server.host.clone());
        check_bind(&loaded.snapshot, &host)?;
        Ok((
            Live {
                current: ArcSwap::from_pointee(loaded.snapshot),
                env,
                path: path.map(Path::to_path_buf),
                version: AtomicU64::new(1),
                text_digest: AtomicU64::new(
                    path.and_then(|p| std::fs::read_to_string(p).ok())
                        .map(|t| digest(&t))
                        .unwrap_or(0),
                ),
                bind_host: host,
            },
            loaded.warnings,
        ))
    }

    /// For tests and embedding: serve a snapshot built elsewhere.
    pub fn from_snapshot(snapshot: Snapshot, path: Option<PathBuf>, env: EnvFn) -> Live {
        let host = snapshot.server.host.clone();
        let version = snapshot.version;
        Live {
            current: ArcSwap::from_pointee(snapshot),
            env,
            path,
            version: AtomicU64::new(version),
            text_digest: AtomicU64::new(0),
            bind_host: host,
        }
    }

    /// One atomic load per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn bind_host(&self) -> &str {
        &self.bind_host
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-read the file; a valid config replaces the live one whole, an invalid one is
    /// rejected whole and the last good config keeps serving.
    pub fn reload(&self) -> Result<u64, ConfigErrors> {
        let Some(path) = self.path.as_deref() else {
            return Ok(self.version.load(Ordering::SeqCst));
        };
        let next = self.version.load(Ordering::SeqCst) + 1;
        let file = path.display().to_string();
        let text = signalbox_core::config::read_file(path)?;
        let digest = digest(&text);
        if digest == self.text_digest.load(Ordering::SeqCst) {
            return Ok(self.version.load(Ordering::SeqCst));
        }
        let lookup = |n: &str| (self.env)(n);
        let loaded = signalbox_core::load_str(&text, Some(&file), &lookup, next)?;
        check_bind(&loaded.snapshot, &self.bind_host)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let old = self.snapshot();
        if old.server.host != loaded.snapshot.server.host
            || old.server.port != loaded.snapshot.server.port
        {
            tracing::warn!(
                "[server] host/port changed in the config file: restart Signalbox to listen on the new address"
            );
        }
        self.current.store(Arc::new(loaded.snapshot));
        self.version.store(next, Ordering::SeqCst);
        self.text_digest.store(digest, Ordering::SeqCst);
        Ok(next)
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn check_bind(s: &Snapshot, host: &str) -> Result<(), ConfigErrors> {
    if s.server.auth == AuthMode::Off && !signalbox_core::config::is_loopback_host(host) {
        return Err(ConfigErrors(vec![ConfigError {
            key: "server.auth".into(),
            message: format!("auth = \"off\" is only allowed on a loopback address, not {host}"),
            file: None,
            line: None,
        }]));
    }
    Ok(())
}

/// Watch the config file and reload on change (debounced). The directory of the path as
/// given is watched (not the target of a symlink), and any change in it triggers a reload
/// that is skipped when the file's text did not change: editors that replace the file and
/// Kubernetes ConfigMaps (which swap a `..data` symlink) are both followed.
pub fn watch(live: Arc<Live>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let path = live.path()?.to_path_buf();
    let abs = std::path::absolute(&path).unwrap_or(path.clone());
    let dir = abs.parent()?.to_path_buf();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!("cannot watch the config file: {e}"))
    .ok()?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!("cannot watch {}: {e}", dir.display()))
        .ok()?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: editors write in several steps.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let l = live.clone();
            match tokio::task::spawn_blocking(move || l.reload()).await {
                Ok(Ok(v)) => tracing::info!(version = v, "config reloaded"),
                Ok(Err(errs)) => {
                    tracing::error!(
                        "config change rejected; the previous config keeps serving:\n{errs}"
                    )
                }
                Err(e) => tracing::error!("config reload failed: {e}"),
            }
        }
    });
    Some(watcher)
}

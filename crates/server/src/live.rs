//! The live configuration: one `ArcSwap<Snapshot>`, replaced whole by a reload.

use arc_swap::ArcSwap;
use signalbox_core::config::{Catalog, ConfigError, ConfigErrors};
use signalbox_core::model::{AuthMode, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Looks up an environment variable (injectable for tests and embedding).
pub type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Live {
    current: ArcSwap<Snapshot>,
    env: EnvFn,
    path: Option<PathBuf>,
    version: AtomicU64,
    /// What the live snapshot was built from; locked only to rebuild, never by requests.
    sources: Mutex<Sources>,
    /// The address actually bound (CLI flags may override the file's).
    bind_host: String,
    /// Whether the store answered the last time it was asked (`/ready`).
    store_reachable: std::sync::atomic::AtomicBool,
    /// False while the store's config does not validate with this node's file: the node
    /// serves its last good config (revocations since included not applied) and is not ready.
    store_in_sync: std::sync::atomic::AtomicBool,
    /// Held by a change from its check to its install (an admin write across its store
    /// commit, a file reload), so two changes each valid alone never both land: the second
    /// is checked against the first.
    changing: tokio::sync::Mutex<()>,
}

/// A snapshot validated against a candidate catalog, and the file text it was built with.
pub struct Candidate {
    pub snapshot: Snapshot,
    text: String,
}

struct Sources {
    /// The file text last applied ("" without a file).
    file_text: String,
    /// The store's catalog last applied, and its version (0: no store).
    catalog: Arc<Catalog>,
    store_version: i64,
}

/// The process environment.
pub fn process_env() -> EnvFn {
    Arc::new(|name: &str| std::env::var(name).ok())
}

impl Live {
    /// Load the first config from the file alone. `path` None: an empty config.
    pub fn load(
        path: Option<&Path>,
        bind_host: Option<&str>,
        env: EnvFn,
    ) -> Result<(Live, Vec<String>), ConfigErrors> {
        Live::load_with_catalog(path, bind_host, env, Catalog::file_only(), 0)
    }

    /// Load the first config from the file and the store's catalog.
    pub fn load_with_catalog(
        path: Option<&Path>,
        bind_host: Option<&str>,
        env: EnvFn,
        catalog: Catalog,
        store_version: i64,
    ) -> Result<(Live, Vec<String>), ConfigErrors> {
        let text = match path {
            Some(p) => signalbox_core::config::read_file(p)?,
            None => String::new(),
        };
        let file = path.map(|p| p.display().to_string());
        let lookup = |n: &str| env(n);
        let loaded = signalbox_core::config::load_with_catalog(
            &text,
            file.as_deref(),
            &lookup,
            1,
            &catalog,
        )?;
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
                sources: Mutex::new(Sources {
                    file_text: text,
                    catalog: Arc::new(catalog),
                    store_version,
                }),
                bind_host: host,
                store_reachable: std::sync::atomic::AtomicBool::new(true),
                store_in_sync: std::sync::atomic::AtomicBool::new(true),
                changing: tokio::sync::Mutex::new(()),
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
            sources: Mutex::new(Sources {
                file_text: String::new(),
                catalog: Arc::new(Catalog::file_only()),
                store_version: 0,
            }),
            bind_host: host,
            store_reachable: std::sync::atomic::AtomicBool::new(true),
            store_in_sync: std::sync::atomic::AtomicBool::new(true),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// One atomic load per request.
    /// An environment variable, as this node sees it (injectable for tests).
    /// Wait for the change under way, if any, and hold off others until the guard drops.
    pub async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    pub fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn bind_host(&self) -> &str {
        &self.bind_host
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self, text: &str, catalog: &Catalog, version: u64) -> Result<Snapshot, ConfigErrors> {
        let file = self.path.as_ref().map(|p| p.display().to_string());
        let lookup = |n: &str| (self.env)(n);
        let loaded = signalbox_core::config::load_with_catalog(
            text,
            file.as_deref(),
            &lookup,
            version,
            catalog,
        )?;
        check_bind(&loaded.snapshot, &self.bind_host)?;
        for w in &loaded.warnings {
            tracing::debug!("{w}");
        }
        Ok(loaded.snapshot)
    }

    /// Re-read the file; a valid config replaces the live one whole, an invalid one is
    /// rejected whole and the last good config keeps serving.
    pub fn reload(&self) -> Result<u64, ConfigErrors> {
        let Some(path) = self.path.as_deref() else {
            return Ok(self.version());
        };
        let text = signalbox_core::config::read_file(path)?;
        let mut src = self.sources();
        if text == src.file_text {
            return Ok(self.version());
        }
        // A file emptied while a config was serving is a tool that truncates before it
        // writes (or a mistake), not "remove every route and key": refused like any bad edit.
        let no_keys = |t: &str| t.parse::<toml::Table>().is_ok_and(|t| t.is_empty());
        if no_keys(&text) && !no_keys(&src.file_text) {
            return Err(signalbox_core::config::ConfigErrors(vec![
                signalbox_core::config::ConfigError {
                    key: String::new(),
                    message: "the config file holds no keys (empty, or only comments); the last good config keeps serving (write a valid config to change it)".into(),
                    file: Some(path.display().to_string()),
                    line: None,
                },
            ]));
        }
        let next = self.version() + 1;
        let snapshot = self.build(&text, &src.catalog, next)?;
        let old = self.snapshot();
        if old.server.host != snapshot.server.host || old.server.port != snapshot.server.port {
            tracing::warn!(
                "[server] host/port changed in the config file: restart Signalbox to listen on the new address"
            );
        }
        if old.server.auth != snapshot.server.auth && snapshot.server.auth == AuthMode::Off {
            tracing::warn!(
                "AUTH IS OFF (config file edit): open development mode, any local caller may use every route without a gateway key. Never expose this address."
            );
        }
        if old.server.header_read_timeout != snapshot.server.header_read_timeout {
            tracing::warn!(
                "[server] header_read_timeout_ms changed in the config file: it is read at start; restart Signalbox to apply it"
            );
        }
        let store_of = |t: &str| signalbox_core::config::parse(t, None).ok().map(|r| r.store);
        if store_of(&text) != store_of(&src.file_text) {
            tracing::warn!(
                "[store] changed in the config file: it is read at start; restart Signalbox to apply it"
            );
        }
        if old.server.admin_listen != snapshot.server.admin_listen {
            tracing::warn!(
                "[server] admin_listen changed in the config file: restart Signalbox to serve the admin API on the new address"
            );
        }
        self.current.store(Arc::new(snapshot));
        self.version.store(next, Ordering::SeqCst);
        src.file_text = text;
        Ok(next)
    }

    /// [`Live::reload`] as one change: after the change under way (an admin write), and
    /// checked against it.
    pub async fn reload_as_change(self: &Arc<Self>) -> Result<u64, ConfigErrors> {
        let _changing = self.changing().await;
        let live = self.clone();
        tokio::task::spawn_blocking(move || live.reload())
            .await
            .unwrap_or_else(|e| {
                Err(ConfigErrors(vec![ConfigError {
                    key: String::new(),
                    message: format!("the reload failed: {e}"),
                    file: None,
                    line: None,
                }]))
            })
    }

    /// Validate the file as last applied together with a candidate catalog: the check an
    /// admin write must pass before it commits.
    pub fn check_catalog(&self, catalog: &Catalog) -> Result<Candidate, ConfigErrors> {
        let text = self.sources().file_text.clone();
        let snapshot = self.build(&text, catalog, self.version() + 1)?;
        Ok(Candidate { snapshot, text })
    }

    /// Serve a candidate built by [`Live::check_catalog`] from the store's catalog at
    /// `store_version`, unless a newer store version is already live. If the file changed
    /// in between, the candidate is rebuilt with the file as it is now, so neither change is
    /// lost; should that fail, nothing changes here and the store follower tries again.
    pub fn install(&self, candidate: Candidate, catalog: Catalog, store_version: i64) -> bool {
        let mut src = self.sources();
        if store_version <= src.store_version {
            return false;
        }
        let next = self.version() + 1;
        let mut snapshot = if candidate.text == src.file_text {
            candidate.snapshot
        } else {
            match self.build(&src.file_text, &catalog, next) {
                Ok(s) => s,
                Err(errs) => {
                    tracing::error!(
                        "a store change does not validate with the config file as edited meanwhile; keeping the current config:\n{errs}"
                    );
                    return false;
                }
            }
        };
        snapshot.version = next;
        self.current.store(Arc::new(snapshot));
        self.version.store(next, Ordering::SeqCst);
        src.catalog = Arc::new(catalog);
        src.store_version = store_version;
        true
    }

    /// The store changed (another node, or a write here): rebuild from its catalog.
    pub fn apply_catalog(
        &self,
        catalog: Catalog,
        store_version: i64,
    ) -> Result<bool, ConfigErrors> {
        if store_version <= self.store_version() {
            return Ok(false);
        }
        let candidate = self.check_catalog(&catalog)?;
        Ok(self.install(candidate, catalog, store_version))
    }

    pub fn store_reachable(&self) -> bool {
        self.store_reachable.load(Ordering::Relaxed)
    }

    pub fn store_in_sync(&self) -> bool {
        self.store_in_sync.load(Ordering::Relaxed)
    }

    pub fn set_store_in_sync(&self, ok: bool) {
        self.store_in_sync.store(ok, Ordering::Relaxed);
    }

    pub fn set_store_reachable(&self, ok: bool) {
        self.store_reachable.store(ok, Ordering::Relaxed);
    }

    pub fn store_version(&self) -> i64 {
        self.sources().store_version
    }

    /// Names of the objects the file defines, per table: they are read-only through the API.
    pub fn file_text(&self) -> String {
        self.sources().file_text.clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
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
    let name = abs.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only the config file, or the `..data`-style entries a Kubernetes ConfigMap swaps;
        // not the store's files when the data directory sits beside the config.
        let relevant = |ev: &notify::Event| {
            ev.paths.is_empty()
                || ev.paths.iter().any(|p| {
                    p.file_name().is_some_and(|f| {
                        Some(f) == name.as_deref() || f.to_string_lossy().starts_with("..")
                    })
                })
        };
        if let Ok(ev) = res
            && !ev.kind.is_access()
            && relevant(&ev)
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
            let before = live.version();
            match live.reload_as_change().await {
                Ok(v) if v != before => tracing::info!(version = v, "config file reloaded"),
                Ok(_) => {}
                Err(errs) => {
                    tracing::error!(
                        "config change rejected; the previous config keeps serving:\n{errs}"
                    )
                }
            }
        }
    });
    Some(watcher)
}

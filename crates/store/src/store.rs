//! The store proper: connection, first start, catalog reads and checked writes, accounts.

use crate::StoreError;
use crate::crypto::{self, MasterKey};
use signalbox_core::config::{Catalog, CatalogCredential, CatalogObject, ObjectKind};
use signalbox_core::model::{KeyEntry, KeyHasher, Secret};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const MASTER_CHECK: &[u8] = b"signalbox master key check v1";
/// The PostgreSQL channel nodes listen on for committed changes.
pub const NOTIFY_CHANNEL: &str = "signalbox_config";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Now, in Unix milliseconds (the store's unit of time).
pub fn now_millis() -> i64 {
    now_ms()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A store URL without its password, for logs: the one in the user info
/// (`postgres://user:***@host/db`) and any `password` or `sslpassword` query parameter.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.find("://") {
        Some(s) => {
            let rest = &base[s + 3..];
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            match authority.rfind('@') {
                Some(at) => match authority[..at].split_once(':') {
                    Some((user, _)) => {
                        format!("{}{user}:***{}", &base[..s + 3], &rest[at..])
                    }
                    None => base.to_string(),
                },
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// A new SQLite database file is created readable by its owner only (it holds traces with
/// captured content, password hashes and the audit log; SQLite gives its `-wal` and `-shm`
/// files the same mode). An existing file keeps the mode it has.
fn create_private(url: &str) {
    #[cfg(unix)]
    if let Some(path) = crate::trace_db::file_of(url) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = url;
}

pub fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported store URL '{}': use sqlite://PATH or postgres://...",
            redact_url(url)
        )))
    }
}

/// Connect and apply missing migrations; returns the pool, backend and versions applied now.
pub async fn connect_and_migrate(url: &str) -> Result<(AnyPool, Backend, Vec<i64>), StoreError> {
    sqlx::any::install_default_drivers();
    let backend = backend_of(url)?;
    if backend == Backend::Sqlite {
        create_private(url);
    }
    let url = match backend {
        Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
        _ => url.to_string(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        })
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    // 2 MiB of page cache a connection (SQLite's default is about 8 MiB):
                    // the gateway's memory should not grow with the trace table.
                    sqlx::query("PRAGMA cache_size = -2048")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    let applied = crate::migrate::run(&pool, backend).await?;
    Ok((pool, backend, applied))
}

pub struct Store {
    pool: AnyPool,
    backend: Backend,
    master: MasterKey,
    hasher: KeyHasher,
    hasher_key: [u8; 32],
    /// Reads of the config version (what a follower polls), for its tests and diagnostics.
    version_reads: std::sync::atomic::AtomicU64,
    /// The trace writer's own connection, on a SQLite file.
    pub(crate) trace_db: Option<crate::trace_db::TraceDb>,
}

/// Who makes a change, for the audit log and history.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// A change to the catalog. Each is applied, checked and committed (or rolled back) whole.
#[derive(Debug, Clone)]
pub enum Change {
    CreateProject {
        name: String,
        description: String,
    },
    DeleteProject {
        name: String,
    },
    /// Set what is given; None leaves a field as it is.
    UpdateProject {
        name: String,
        description: Option<String>,
        content_capture: Option<bool>,
    },
    /// Create or replace an object; `if_match` the version the writer last saw;
    /// `create_only` refuses to replace.
    PutObject {
        kind: ObjectKind,
        project: String,
        name: String,
        body: serde_json::Value,
        if_match: Option<i64>,
        create_only: bool,
    },
    DeleteObject {
        kind: ObjectKind,
        project: String,
        name: String,
        if_match: Option<i64>,
    },
    /// Create or replace a credential; `if_match` the version the writer last saw.
    PutCredential {
        project: String,
        name: String,
        value: String,
        if_match: Option<i64>,
        /// Refuse (409) if a credential of that name exists, in the same transaction.
        create_only: bool,
    },
    DeleteCredential {
        project: String,
        name: String,
        if_match: Option<i64>,
    },
    CreateKey {
        project: String,
        name: String,
        expires_at: Option<i64>,
        /// A given key value (bootstrap from the environment); None: generate one.
        value: Option<String>,
    },
    RevokeKey {
        project: String,
        id: String,
    },
    /// A new key replacing `id`; the old one keeps working for `grace_secs`.
    RotateKey {
        project: String,
        id: String,
        grace_secs: i64,
    },
}

/// What a committed change produced.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub config_version: i64,
    /// New version of the object written, if any.
    pub object_version: Option<i64>,
    /// The write created the object (it did not exist before).
    pub created: bool,
    /// A secret to reveal once (a new gateway key).
    pub revealed: Option<String>,
    pub key: Option<ApiKeyInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectRecord {
    pub kind: String,
    pub project: String,
    pub name: String,
    pub body: serde_json::Value,
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionRecord {
    pub version: i64,
    pub author: String,
    pub created_at: i64,
    /// None: the object was deleted in this version.
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialInfo {
    pub name: String,
    pub project: String,
    pub hint: String,
    /// The store's change number at its last write (the admin API's ETag): it only goes up,
    /// across a delete and a re-create too.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub project: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectInfo {
    pub name: String,
    pub description: String,
    /// Traces keep request and answer text (capped).
    pub content_capture: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserInfo {
    pub name: String,
    pub is_admin: bool,
    pub roles: BTreeMap<String, String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub user: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub project: Option<String>,
    pub action: String,
    pub object: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Values created at first start that came from no environment variable: for
/// `<data_dir>/initial-credentials`.
#[derive(Debug, Default)]
pub struct InitialCredentials {
    pub admin_password: Option<String>,
    pub gateway_key: Option<String>,
}

impl InitialCredentials {
    pub fn is_empty(&self) -> bool {
        self.admin_password.is_none() && self.gateway_key.is_none()
    }
}

/// The longest a gateway key may be given to live, in seconds (a hundred years).
pub const MAX_KEY_LIFETIME_SECS: i64 = 100 * 365 * 24 * 3600;

/// The rule a gateway key's or an admin token's name follows: 1 to 128 characters, not all
/// spaces.
pub fn label_ok(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 128
}

/// Environment-provided bootstrap values.
#[derive(Debug, Default, Clone)]
pub struct BootstrapEnv {
    pub admin_password: Option<String>,
    pub admin_token: Option<String>,
    pub gateway_key: Option<String>,
}

impl BootstrapEnv {
    /// Each secret given is long enough. Checked before anything is created, so a refused
    /// first start leaves no data directory, key or database behind.
    pub fn check(&self) -> Result<(), StoreError> {
        for (name, value, min) in [
            ("SIGNALBOX_ADMIN_PASSWORD", &self.admin_password, 8),
            ("SIGNALBOX_ADMIN_TOKEN", &self.admin_token, 16),
            ("SIGNALBOX_BOOTSTRAP_KEY", &self.gateway_key, 16),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty())
                && (v.chars().count() < min || v.trim().is_empty())
            {
                return Err(StoreError::Invalid(format!(
                    "{name} must be at least {min} characters"
                )));
            }
        }
        Ok(())
    }
}

pub const ROLES: &[&str] = &["owner", "editor", "viewer"];

/// An authenticated admin API caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub is_admin: bool,
    pub roles: HashMap<String, String>,
    pub token_id: String,
}

impl Principal {
    /// The rank of this principal's rights in a project: 3 owner, 2 editor, 1 viewer, 0 none.
    pub fn rank(&self, project: &str) -> u8 {
        if self.is_admin {
            return 3;
        }
        match self.roles.get(project).map(String::as_str) {
            Some("owner") => 3,
            Some("editor") => 2,
            Some("viewer") => 1,
            _ => 0,
        }
    }
}

fn opt_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

fn object_record(r: &AnyRow) -> Result<ObjectRecord, StoreError> {
    let body: String = r.try_get("body")?;
    Ok(ObjectRecord {
        kind: r.try_get("kind")?,
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        version: r.try_get("version")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

fn project_info(r: &AnyRow) -> Result<ProjectInfo, StoreError> {
    Ok(ProjectInfo {
        name: r.try_get(0)?,
        description: r.try_get(1)?,
        content_capture: r.try_get::<i64, _>(2)? != 0,
        created_at: r.try_get(3)?,
    })
}

fn key_info(r: &AnyRow) -> Result<ApiKeyInfo, StoreError> {
    Ok(ApiKeyInfo {
        id: r.try_get("id")?,
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

impl Store {
    /// Connect, migrate, and unlock with the master key: on a new store the key is recorded;
    /// on an existing one a wrong key refuses to open.
    pub async fn open(url: &str, master: MasterKey) -> Result<Store, StoreError> {
        let (pool, backend, applied) = connect_and_migrate(url).await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "store migrations applied");
        }
        let mut tx = pool.begin().await?;
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7413520002)")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query("SELECT master_check, key_hash_secret FROM meta WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        let hasher_key: [u8; 32] = match row {
            Some(r) => {
                let check: String = r.try_get(0)?;
                let sealed: String = r.try_get(1)?;
                match crypto::open(&master, "meta:master_check", &check) {
                    Ok(v) if v == MASTER_CHECK => {}
                    _ => {
                        return Err(StoreError::MasterKey(
                            "the master key does not unlock this store (was SIGNALBOX_MASTER_KEY or the key file changed?); refusing to start rather than serve undecryptable credentials".into(),
                        ));
                    }
                }
                let k = crypto::open(&master, "meta:key_hash_secret", &sealed)?;
                k.try_into().map_err(|_| {
                    StoreError::Crypto("meta.key_hash_secret has the wrong length".into())
                })?
            }
            None => {
                let k: [u8; 32] = rand::random();
                sqlx::query(
                    "INSERT INTO meta (id, config_version, master_check, key_hash_secret, created_at) VALUES (1, 1, $1, $2, $3)",
                )
                .bind(crypto::seal(&master, "meta:master_check", MASTER_CHECK)?)
                .bind(crypto::seal(&master, "meta:key_hash_secret", &k)?)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                k
            }
        };
        tx.commit().await?;
        let store = Store {
            pool,
            backend,
            master,
            hasher: KeyHasher::new(hasher_key),
            hasher_key,
            version_reads: std::sync::atomic::AtomicU64::new(0),
            trace_db: match crate::trace_db::file_of(url) {
                Some(file) if backend == Backend::Sqlite => {
                    match crate::trace_db::TraceDb::open(&file) {
                        Ok(db) => Some(db),
                        Err(e) => {
                            tracing::warn!("traces will be written through the pool: {e}");
                            None
                        }
                    }
                }
                _ => None,
            },
        };
        // Every credential must decrypt: never start serving with garbage.
        store.load_catalog().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// How many times [`Store::config_version`] has been read.
    pub fn version_reads(&self) -> u64 {
        self.version_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn config_version(&self) -> Result<i64, StoreError> {
        self.version_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(sqlx::query("SELECT config_version FROM meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// The whole catalog and the version it belongs to, read in one transaction.
    pub async fn load_catalog(&self) -> Result<(Catalog, i64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let out = self.read_catalog(&mut tx).await?;
        tx.rollback().await?;
        Ok(out)
    }

    async fn read_catalog(&self, tx: &mut Tx<'_>) -> Result<(Catalog, i64), StoreError> {
        let version: i64 = sqlx::query("SELECT config_version FROM meta WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        let mut projects = Vec::new();
        let mut capture_content = Vec::new();
        for r in sqlx::query("SELECT name, content_capture FROM projects ORDER BY name")
            .fetch_all(&mut **tx)
            .await?
        {
            let name: String = r.try_get(0)?;
            if r.try_get::<i64, _>(1)? != 0 {
                capture_content.push(name.clone());
            }
            projects.push(name);
        }
        let mut objects = Vec::new();
        for r in sqlx::query(
            "SELECT kind, project, name, body, version FROM objects ORDER BY kind, name",
        )
        .fetch_all(&mut **tx)
        .await?
        {
            let kind: String = r.try_get(0)?;
            let Some(kind) = ObjectKind::parse(&kind) else {
                continue;
            };
            let body: String = r.try_get(3)?;
            objects.push(CatalogObject {
                kind,
                project: r.try_get(1)?,
                name: r.try_get(2)?,
                body: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Invalid(format!("stored object is not JSON: {e}")))?,
                version: r.try_get(4)?,
            });
        }
        let mut credentials = HashMap::new();
        for r in sqlx::query("SELECT name, project, ciphertext FROM credentials")
            .fetch_all(&mut **tx)
            .await?
        {
            let name: String = r.try_get(0)?;
            let sealed: String = r.try_get(2)?;
            let plain = crypto::open(&self.master, &format!("credential:{name}"), &sealed)?;
            let value = String::from_utf8(plain)
                .map_err(|_| StoreError::Crypto(format!("credential {name} is not UTF-8")))?;
            credentials.insert(
                name,
                CatalogCredential {
                    project: r.try_get(1)?,
                    secret: Secret::new(value),
                },
            );
        }
        let mut keys = Vec::new();
        for r in sqlx::query(
            "SELECT id, project, hash, expires_at FROM api_keys WHERE revoked_at IS NULL",
        )
        .fetch_all(&mut **tx)
        .await?
        {
            let hash: String = r.try_get(2)?;
            let Some(h) = crypto::unhex32(&hash) else {
                continue;
            };
            let expires: Option<i64> = r.try_get(3)?;
            keys.push((
                h,
                KeyEntry {
                    id: r.try_get(0)?,
                    project: r.try_get(1)?,
                    expires_at_ms: expires,
                },
            ));
        }
        Ok((
            Catalog {
                projects,
                capture_content,
                objects,
                credentials,
                keys,
                key_hasher: self.hasher.clone(),
            },
            version,
        ))
    }

    /// Apply `change`, check the resulting catalog with `check`, and commit only if it passes
    /// (a check's error, config errors or a [`StoreError::Refused`], is the answer).
    pub async fn write<T, E: Into<StoreError>>(
        &self,
        actor: &Actor,
        change: Change,
        check: impl FnOnce(&Catalog, i64) -> Result<T, E>,
    ) -> Result<(T, Committed), StoreError> {
        self.write_all(actor, vec![change], check).await
    }

    /// Apply several changes in one transaction: all of them commit, or none.
    pub async fn write_all<T, E: Into<StoreError>>(
        &self,
        actor: &Actor,
        changes: Vec<Change>,
        check: impl FnOnce(&Catalog, i64) -> Result<T, E>,
    ) -> Result<(T, Committed), StoreError> {
        let mut tx = self.pool.begin().await?;
        // First statement a write: takes SQLite's write lock / PostgreSQL's row lock, so
        // concurrent writers queue here instead of validating against a stale catalog.
        let version: i64 = sqlx::query(
            "UPDATE meta SET config_version = config_version + 1 WHERE id = 1 RETURNING config_version",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        self.check_master_key(&mut tx).await?;
        // What the first change produced is the answer; the others ride along with it, but a
        // secret to reveal (a new key, after the project it belongs to) is never lost.
        let mut committed: Option<Committed> = None;
        for change in &changes {
            let c = self.apply(&mut tx, actor, change).await?;
            match &mut committed {
                None => committed = Some(c),
                Some(first) if first.revealed.is_none() && c.revealed.is_some() => {
                    first.revealed = c.revealed;
                    first.key = c.key;
                }
                Some(_) => {}
            }
        }
        let mut committed = committed.unwrap_or_default();
        committed.config_version = version;
        let (catalog, _) = self.read_catalog(&mut tx).await?;
        let out = match check(&catalog, version) {
            Ok(v) => v,
            Err(e) => {
                tx.rollback().await?;
                return Err(e.into());
            }
        };
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(version.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((out, committed))
    }

    /// A node still holding a rotated-away master key must not write secrets under it.
    async fn check_master_key(&self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let check: String = sqlx::query("SELECT master_check FROM meta WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        match crypto::open(&self.master, "meta:master_check", &check) {
            Ok(v) if v == MASTER_CHECK => Ok(()),
            _ => Err(StoreError::MasterKey(
                "the store's master key was rotated since this node started; restart it with the new key".into(),
            )),
        }
    }

    async fn audit(
        tx: &mut Tx<'_>,
        actor: &Actor,
        project: Option<&str>,
        action: &str,
        object: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, project, action, object, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(now_ms())
        .bind(actor.0.clone())
        .bind(project.map(str::to_string))
        .bind(action.to_string())
        .bind(object.to_string())
        .bind(before.map(|v| v.to_string()))
        .bind(after.map(|v| v.to_string()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn project_exists(tx: &mut Tx<'_>, project: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT name FROM projects WHERE name = $1")
            .bind(project.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .is_some())
    }

    async fn need_project(tx: &mut Tx<'_>, project: &str) -> Result<(), StoreError> {
        if Self::project_exists(tx, project).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "no project named '{project}'"
            )))
        }
    }

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        actor: &Actor,
        change: &Change,
    ) -> Result<Committed, StoreError> {
        let now = now_ms();
        let mut out = Committed::default();
        match change {
            Change::CreateProject { name, description } => {
                // Every way in (admin API, import, bootstrap) creates projects by this rule,
                // the one the config file's `project` keys are checked by.
                if !signalbox_core::config::valid_plain_name(name) {
                    return Err(StoreError::Invalid(format!(
                        "'{name}' is not a valid project name: 1 to 128 letters, digits, '-', '_' or '.'"
                    )));
                }
                if Self::project_exists(tx, name).await? {
                    return Err(StoreError::Conflict(format!(
                        "a project named '{name}' already exists"
                    )));
                }
                sqlx::query(
                    "INSERT INTO projects (name, description, created_at) VALUES ($1, $2, $3)",
                )
                .bind(name.clone())
                .bind(description.clone())
                .bind(now)
                .execute(&mut **tx)
                .await?;
                let after = serde_json::json!({"name": name, "description": description});
                Self::audit(
                    tx,
                    actor,
                    Some(name),
                    "create",
                    &format!("project:{name}"),
                    None,
                    Some(&after),
                )
                .await?;
            }
            Change::UpdateProject {
                name,
                description,
                content_capture,
            } => {
                let before = self.project_in(tx, name).await?;
                if let Some(d) = description {
                    sqlx::query("UPDATE projects SET description = $1 WHERE name = $2")
                        .bind(d.clone())
                        .bind(name.clone())
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(c) = content_capture {
                    sqlx::query("UPDATE projects SET content_capture = $1 WHERE name = $2")
                        .bind(*c as i64)
                        .bind(name.clone())
                        .execute(&mut **tx)
                        .await?;
                }
                let after = self.project_in(tx, name).await?;
                let (b, a) = (
                    serde_json::to_value(&before).ok(),
                    serde_json::to_value(&after).ok(),
                );
                Self::audit(
                    tx,
                    actor,
                    Some(name),
                    "update",
                    &format!("project:{name}"),
                    b.as_ref(),
                    a.as_ref(),
                )
                .await?;
            }
            Change::DeleteProject { name } => {
                Self::need_project(tx, name).await?;
                let used: i64 = sqlx::query(
                    // Keys revoked or expired do not hold a project.
                    "SELECT (SELECT COUNT(*) FROM objects WHERE project = $1) + (SELECT COUNT(*) FROM credentials WHERE project = $1) + (SELECT COUNT(*) FROM api_keys WHERE project = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2))",
                )
                .bind(name.clone())
                .bind(now_ms())
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
                if used > 0 {
                    return Err(StoreError::Conflict(format!(
                        "project '{name}' still holds {used} object(s), credential(s) or key(s); delete them first"
                    )));
                }
                // What the project leaves behind goes with it: a project created later under
                // the same name starts empty (no old traces, captured content or versions).
                for table in ["api_keys", "object_versions", "traces"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE project = $1"))
                        .bind(name.clone())
                        .execute(&mut **tx)
                        .await?;
                }
                sqlx::query("DELETE FROM projects WHERE name = $1")
                    .bind(name.clone())
                    .execute(&mut **tx)
                    .await?;
                Self::audit(
                    tx,
                    actor,
                    Some(name),
                    "delete",
                    &format!("project:{name}"),
                    None,
                    None,
                )
                .await?;
            }
            Change::PutObject {
                kind,
                project,
                name,
                body,
                if_match,
                create_only,
            } => {
                Self::need_project(tx, project).await?;
                let existing = sqlx::query(
                    "SELECT kind, project, name, body, version, updated_at, updated_by FROM objects WHERE kind = $1 AND name = $2",
                )
                .bind(kind.as_str())
                .bind(name.clone())
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| object_record(&r))
                .transpose()?;
                if let Some(e) = &existing
                    && e.project != *project
                {
                    // Which project holds it is not said: the caller may have no role there.
                    return Err(StoreError::Conflict(format!(
                        "the name '{name}' is taken by a {} of another project; names are unique across projects",
                        kind.as_str(),
                    )));
                }
                if *create_only && existing.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "a {} named '{name}' already exists",
                        kind.as_str()
                    )));
                }
                check_if_match(
                    kind.as_str(),
                    name,
                    *if_match,
                    existing.as_ref().map(|e| e.version),
                )?;
                // A name deleted before continues its history (its versions are kept).
                let version = match &existing {
                    Some(e) => e.version + 1,
                    None => {
                        let max: Option<i64> = sqlx::query(
                            "SELECT MAX(version) FROM object_versions WHERE kind = $1 AND name = $2",
                        )
                        .bind(kind.as_str())
                        .bind(name.clone())
                        .fetch_one(&mut **tx)
                        .await?
                        .try_get(0)?;
                        max.unwrap_or(0) + 1
                    }
                };
                let text = body.to_string();
                sqlx::query(
                    "INSERT INTO objects (kind, name, project, body, version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(kind.as_str())
                .bind(name.clone())
                .bind(project.clone())
                .bind(text.clone())
                .bind(version)
                .bind(now)
                .bind(actor.0.clone())
                .execute(&mut **tx)
                .await?;
                Self::record_version(tx, *kind, name, version, project, Some(&text), actor, now)
                    .await?;
                Self::audit(
                    tx,
                    actor,
                    Some(project),
                    if existing.is_some() {
                        "update"
                    } else {
                        "create"
                    },
                    &format!("{}:{name}", kind.as_str()),
                    existing.as_ref().map(|e| &e.body),
                    Some(body),
                )
                .await?;
                out.object_version = Some(version);
                out.created = existing.is_none();
            }
            Change::DeleteObject {
                kind,
                project,
                name,
                if_match,
            } => {
                // With If-Match, an object that is gone is a stale precondition (412), not 404.
                let existing = match self.object_in(tx, *kind, project, name).await {
                    Err(StoreError::NotFound(_)) if let Some(want) = *if_match => {
                        return Err(gone_at(kind.as_str(), name, want));
                    }
                    r => r?,
                };
                check_if_match(kind.as_str(), name, *if_match, Some(existing.version))?;
                sqlx::query("DELETE FROM objects WHERE kind = $1 AND name = $2")
                    .bind(kind.as_str())
                    .bind(name.clone())
                    .execute(&mut **tx)
                    .await?;
                let version = existing.version + 1;
                Self::record_version(tx, *kind, name, version, project, None, actor, now).await?;
                Self::audit(
                    tx,
                    actor,
                    Some(project),
                    "delete",
                    &format!("{}:{name}", kind.as_str()),
                    Some(&existing.body),
                    None,
                )
                .await?;
                out.object_version = Some(version);
            }
            Change::PutCredential {
                project,
                name,
                value,
                if_match,
                create_only,
            } => {
                Self::need_project(tx, project).await?;
                if value.trim().is_empty() {
                    return Err(StoreError::Invalid(
                        "a credential's value may not be empty".into(),
                    ));
                }
                if http_header_unsafe(value) {
                    return Err(StoreError::Invalid(
                        "a credential's value must be printable text that can travel in an HTTP header".into(),
                    ));
                }
                let existing =
                    sqlx::query("SELECT project, version FROM credentials WHERE name = $1")
                        .bind(name.clone())
                        .fetch_optional(&mut **tx)
                        .await?;
                let version = match &existing {
                    Some(r) => {
                        let p: String = r.try_get(0)?;
                        if p != *project {
                            return Err(StoreError::Conflict(format!(
                                "the name '{name}' is taken by a credential of another project"
                            )));
                        }
                        if *create_only {
                            return Err(StoreError::Conflict(format!(
                                "a credential named '{name}' already exists"
                            )));
                        }
                        let current = r.try_get::<i64, _>(1)?;
                        check_if_match("credential", name, *if_match, Some(current))?;
                        current
                    }
                    None => {
                        check_if_match("credential", name, *if_match, None)?;
                        0
                    }
                };
                // The store's change number of this write: it only goes up, so a credential
                // deleted and made again never shows a version (an ETag) it had before.
                let stamp: i64 = sqlx::query_scalar("SELECT config_version FROM meta WHERE id = 1")
                    .fetch_one(&mut **tx)
                    .await?;
                let version = stamp.max(version + 1);
                let value = value.trim();
                let sealed = crypto::seal(
                    &self.master,
                    &format!("credential:{name}"),
                    value.as_bytes(),
                )?;
                let hint = crypto::hint_of(value);
                sqlx::query(
                    "INSERT INTO credentials (name, project, ciphertext, hint, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, hint = excluded.hint, version = excluded.version, updated_at = excluded.updated_at",
                )
                .bind(name.clone())
                .bind(project.clone())
                .bind(sealed)
                .bind(hint.clone())
                .bind(version)
                .bind(now)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                let after = serde_json::json!({"name": name, "hint": hint});
                Self::audit(
                    tx,
                    actor,
                    Some(project),
                    if existing.is_some() {
                        "update"
                    } else {
                        "create"
                    },
                    &format!("credential:{name}"),
                    None,
                    Some(&after),
                )
                .await?;
                out.object_version = Some(version);
                out.created = existing.is_none();
            }
            Change::DeleteCredential {
                project,
                name,
                if_match,
            } => {
                let current: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM credentials WHERE name = $1 AND project = $2",
                )
                .bind(name.clone())
                .bind(project.clone())
                .fetch_optional(&mut **tx)
                .await?;
                if current.is_none() && if_match.is_none() {
                    return Err(StoreError::NotFound(format!(
                        "no credential named '{name}' in project '{project}'"
                    )));
                }
                check_if_match("credential", name, *if_match, current)?;
                sqlx::query("DELETE FROM credentials WHERE name = $1 AND project = $2")
                    .bind(name.clone())
                    .bind(project.clone())
                    .execute(&mut **tx)
                    .await?;
                Self::audit(
                    tx,
                    actor,
                    Some(project),
                    "delete",
                    &format!("credential:{name}"),
                    None,
                    None,
                )
                .await?;
            }
            Change::CreateKey {
                project,
                name,
                expires_at,
                value,
            } => {
                Self::need_project(tx, project).await?;
                if !label_ok(name) {
                    return Err(StoreError::Invalid(
                        "a gateway key's name is 1 to 128 characters".into(),
                    ));
                }
                let secret = value.clone().unwrap_or_else(crypto::new_gateway_key);
                let info = self
                    .insert_key(tx, actor, project, name, &secret, *expires_at, now)
                    .await?;
                out.revealed = Some(secret);
                out.key = Some(info);
            }
            Change::RevokeKey { project, id } => {
                let info = self.key_in(tx, project, id).await?;
                if info.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "key '{id}' is already revoked"
                    )));
                }
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id.clone())
                    .execute(&mut **tx)
                    .await?;
                let before = serde_json::to_value(&info).ok();
                Self::audit(
                    tx,
                    actor,
                    Some(project),
                    "revoke",
                    &format!("api_key:{id}"),
                    before.as_ref(),
                    None,
                )
                .await?;
            }
            Change::RotateKey {
                project,
                id,
                grace_secs,
            } => {
                let old = self.key_in(tx, project, id).await?;
                if old.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "key '{id}' is revoked and cannot be rotated"
                    )));
                }
                let grace_end = now + grace_secs.max(&0) * 1000;
                let new_expiry = match old.expires_at {
                    Some(e) => Some(e.min(grace_end)),
                    None => Some(grace_end),
                };
                sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
                    .bind(new_expiry)
                    .bind(id.clone())
                    .execute(&mut **tx)
                    .await?;
                let secret = crypto::new_gateway_key();
                let info = self
                    .insert_key(tx, actor, project, &old.name, &secret, None, now)
                    .await?;
                let before = serde_json::to_value(&old).ok();
                let after =
                    serde_json::json!({"replaced_by": info.id, "old_key_expires_at": new_expiry});
                Self::audit(
                    tx,
                    actor,
                    Some(project),
                    "rotate",
                    &format!("api_key:{id}"),
                    before.as_ref(),
                    Some(&after),
                )
                .await?;
                out.revealed = Some(secret);
                out.key = Some(info);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_key(
        &self,
        tx: &mut Tx<'_>,
        actor: &Actor,
        project: &str,
        name: &str,
        secret: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<ApiKeyInfo, StoreError> {
        let hash = crypto::hex(&self.hasher.hash(secret));
        let exists = sqlx::query("SELECT id FROM api_keys WHERE hash = $1")
            .bind(hash.clone())
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if exists {
            return Err(StoreError::Conflict(
                "that key value is already in use".into(),
            ));
        }
        let info = ApiKeyInfo {
            id: format!("key_{}", uuid::Uuid::now_v7().simple()),
            project: project.to_string(),
            name: name.to_string(),
            prefix: crypto::prefix_of(secret),
            created_at: now,
            created_by: actor.0.clone(),
            expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, project, name, prefix, hash, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(info.id.clone())
        .bind(info.project.clone())
        .bind(info.name.clone())
        .bind(info.prefix.clone())
        .bind(hash)
        .bind(now)
        .bind(actor.0.clone())
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
        let after = serde_json::to_value(&info).ok();
        Self::audit(
            tx,
            actor,
            Some(project),
            "create",
            &format!("api_key:{}", info.id),
            None,
            after.as_ref(),
        )
        .await?;
        Ok(info)
    }

    async fn key_in(
        &self,
        tx: &mut Tx<'_>,
        project: &str,
        id: &str,
    ) -> Result<ApiKeyInfo, StoreError> {
        let r = sqlx::query("SELECT * FROM api_keys WHERE id = $1 AND project = $2")
            .bind(id.to_string())
            .bind(project.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no key '{id}' in project '{project}'")))?;
        key_info(&r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_version(
        tx: &mut Tx<'_>,
        kind: ObjectKind,
        name: &str,
        version: i64,
        project: &str,
        body: Option<&str>,
        actor: &Actor,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO object_versions (kind, name, version, project, body, author, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(kind.as_str())
        .bind(name.to_string())
        .bind(version)
        .bind(project.to_string())
        .bind(body.map(str::to_string))
        .bind(actor.0.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn object_in(
        &self,
        tx: &mut Tx<'_>,
        kind: ObjectKind,
        project: &str,
        name: &str,
    ) -> Result<ObjectRecord, StoreError> {
        let r = sqlx::query(
            "SELECT kind, project, name, body, version, updated_at, updated_by FROM objects WHERE kind = $1 AND name = $2 AND project = $3",
        )
        .bind(kind.as_str())
        .bind(name.to_string())
        .bind(project.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("no {} named '{name}' in project '{project}'", kind.as_str()))
        })?;
        object_record(&r)
    }

    // ---- reads ----

    pub async fn projects(&self) -> Result<Vec<ProjectInfo>, StoreError> {
        sqlx::query(
            "SELECT name, description, content_capture, created_at FROM projects ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(project_info)
        .collect()
    }

    async fn project_in(&self, tx: &mut Tx<'_>, name: &str) -> Result<ProjectInfo, StoreError> {
        let r = sqlx::query(
            "SELECT name, description, content_capture, created_at FROM projects WHERE name = $1",
        )
        .bind(name.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no project named '{name}'")))?;
        project_info(&r)
    }

    pub async fn project(&self, name: &str) -> Result<Option<ProjectInfo>, StoreError> {
        Ok(self.projects().await?.into_iter().find(|p| p.name == name))
    }

    pub async fn objects(
        &self,
        kind: ObjectKind,
        project: &str,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        sqlx::query(
            "SELECT kind, project, name, body, version, updated_at, updated_by FROM objects WHERE kind = $1 AND project = $2 ORDER BY name",
        )
        .bind(kind.as_str())
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(object_record)
        .collect()
    }

    /// The stored credentials (`credential::NAME`) any version of any object of `project`
    /// ever referenced: credentials that have been sent somewhere.
    pub async fn credentials_ever_referenced(
        &self,
        project: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM object_versions WHERE project = $1 AND body LIKE '%credential::%'",
        )
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut names = std::collections::BTreeSet::new();
        for r in rows {
            let body: String = r.try_get(0)?;
            let mut rest = body.as_str();
            while let Some(i) = rest.find("credential::") {
                rest = &rest[i + "credential::".len()..];
                let end = rest.find('"').unwrap_or(rest.len());
                names.insert(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
        Ok(names)
    }

    /// Every stored object of a kind, whatever its project.
    pub async fn objects_all(&self, kind: ObjectKind) -> Result<Vec<ObjectRecord>, StoreError> {
        sqlx::query(
            "SELECT kind, project, name, body, version, updated_at, updated_by FROM objects WHERE kind = $1 ORDER BY name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(object_record)
        .collect()
    }

    pub async fn object(
        &self,
        kind: ObjectKind,
        project: &str,
        name: &str,
    ) -> Result<ObjectRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = self.object_in(&mut tx, kind, project, name).await;
        tx.rollback().await?;
        r
    }

    pub async fn history(
        &self,
        kind: ObjectKind,
        project: &str,
        name: &str,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, author, created_at, body FROM object_versions WHERE kind = $1 AND name = $2 AND project = $3 ORDER BY version DESC",
        )
        .bind(kind.as_str())
        .bind(name.to_string())
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(format!(
                "no {} named '{name}' in project '{project}' has any history",
                kind.as_str()
            )));
        }
        rows.iter()
            .map(|r| {
                Ok(VersionRecord {
                    version: r.try_get(0)?,
                    author: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    body: opt_json(r.try_get(3)?),
                })
            })
            .collect()
    }

    pub async fn credentials(&self, project: &str) -> Result<Vec<CredentialInfo>, StoreError> {
        sqlx::query(
            "SELECT name, project, hint, version, created_at, updated_at FROM credentials WHERE project = $1 ORDER BY name",
        )
        .bind(project.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(CredentialInfo {
                name: r.try_get(0)?,
                project: r.try_get(1)?,
                hint: r.try_get(2)?,
                version: r.try_get(3)?,
                created_at: r.try_get(4)?,
                updated_at: r.try_get(5)?,
            })
        })
        .collect()
    }

    pub async fn keys(&self, project: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        sqlx::query("SELECT * FROM api_keys WHERE project = $1 ORDER BY created_at, id")
            .bind(project.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(key_info)
            .collect()
    }

    pub async fn audit_log(
        &self,
        project: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = match project {
            Some(p) => {
                sqlx::query("SELECT * FROM audit_log WHERE project = $1 ORDER BY id DESC LIMIT $2")
                    .bind(p.to_string())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    project: r.try_get("project")?,
                    action: r.try_get("action")?,
                    object: r.try_get("object")?,
                    before: opt_json(r.try_get("before_json")?),
                    after: opt_json(r.try_get("after_json")?),
                })
            })
            .collect()
    }

    // ---- accounts ----

    /// First start: project `default`, the `admin` user and a gateway key, each created once.
    pub async fn bootstrap(&self, env: &BootstrapEnv) -> Result<InitialCredentials, StoreError> {
        env.check()?;
        let actor = Actor("system".into());
        let mut created = InitialCredentials::default();
        let mut tx = self.pool.begin().await?;
        // Taken first, so bootstraps one at a time (several nodes starting together); the
        // version moves only when something is created below: every command opens the store
        // this way, a read-only one included, and nodes rebuild their config when it moves.
        sqlx::query("UPDATE meta SET config_version = config_version WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let mut changed = false;
        let now = now_ms();
        let admin_exists = sqlx::query("SELECT name FROM users WHERE name = 'admin'")
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !Self::project_exists(&mut tx, "default").await? {
            sqlx::query("INSERT INTO projects (name, description, created_at) VALUES ('default', 'Created at first start', $1)")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            changed = true;
        }
        if !admin_exists {
            changed = true;
            let (password, generated) =
                match env.admin_password.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) => (p.to_string(), false),
                    None => (crypto::random_token(18), true),
                };
            // Off the async threads, as at every login: argon2 takes ~50 ms and 19 MiB.
            let hash = hash_blocking(password.clone()).await?;
            sqlx::query("INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ('admin', $1, 1, $2)")
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if generated {
                created.admin_password = Some(password);
            }
            let (key, generated) = match env.gateway_key.as_deref().filter(|k| !k.is_empty()) {
                Some(k) => (k.to_string(), false),
                None => (crypto::new_gateway_key(), true),
            };
            self.insert_key(&mut tx, &actor, "default", "initial", &key, None, now)
                .await?;
            if generated {
                created.gateway_key = Some(key);
            }
            Self::audit(&mut tx, &actor, None, "bootstrap", "user:admin", None, None).await?;
        }
        if let Some(token) = env.admin_token.as_deref().filter(|t| !t.is_empty()) {
            let hash = crypto::hex(&self.hasher.hash(token));
            let known = sqlx::query("SELECT id FROM admin_tokens WHERE hash = $1")
                .bind(hash.clone())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !known {
                sqlx::query("INSERT INTO admin_tokens (id, user_name, name, prefix, hash, created_at) VALUES ($1, 'admin', 'SIGNALBOX_ADMIN_TOKEN', $2, $3, $4)")
                    .bind(format!("tok_{}", uuid::Uuid::now_v7().simple()))
                    .bind(crypto::prefix_of(token))
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                changed = true;
            }
        }
        if changed {
            sqlx::query("UPDATE meta SET config_version = config_version + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Check a username and password; on success a new token valid for `ttl`.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<(String, i64)>, StoreError> {
        if !self.check_password(user, password).await? {
            return Ok(None);
        }
        let expires = now_ms() + ttl.as_millis() as i64;
        let (token, _) = self
            .create_token(&Actor(user.into()), user, "login", Some(expires))
            .await?;
        Ok(Some((token, expires)))
    }

    /// Whether `password` is `user`'s (an unknown user takes as long and is `false`).
    pub async fn check_password(&self, user: &str, password: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let hash: Option<String> = match &row {
            Some(r) => r.try_get(0)?,
            None => None,
        };
        let ok = match hash {
            Some(h) => verify_blocking(password.to_string(), h).await,
            None => {
                // Spend the same time on unknown users: no user enumeration by timing.
                let _ = verify_blocking(password.to_string(), dummy_hash()).await;
                false
            }
        };
        Ok(ok)
    }

    pub async fn create_token(
        &self,
        actor: &Actor,
        user: &str,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<(String, TokenInfo), StoreError> {
        let token = crypto::new_admin_token();
        let info = TokenInfo {
            id: format!("tok_{}", uuid::Uuid::now_v7().simple()),
            user: user.to_string(),
            name: name.to_string(),
            prefix: crypto::prefix_of(&token),
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
        };
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT name FROM users WHERE name = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!("no user named '{user}'")));
        }
        sqlx::query("INSERT INTO admin_tokens (id, user_name, name, prefix, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(info.id.clone())
            .bind(user.to_string())
            .bind(name.to_string())
            .bind(info.prefix.clone())
            .bind(crypto::hex(&self.hasher.hash(&token)))
            .bind(info.created_at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        if name != "login" {
            let after = serde_json::to_value(&info).ok();
            Self::audit(
                &mut tx,
                actor,
                None,
                "create",
                &format!("token:{}", info.id),
                None,
                after.as_ref(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((token, info))
    }

    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = match user {
            Some(u) => {
                sqlx::query("SELECT * FROM admin_tokens WHERE user_name = $1 ORDER BY created_at")
                    .bind(u.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM admin_tokens ORDER BY created_at")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    user: r.try_get("user_name")?,
                    name: r.try_get("name")?,
                    prefix: r.try_get("prefix")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    pub async fn revoke_token(
        &self,
        actor: &Actor,
        id: &str,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let q = match owner {
            Some(u) => sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND user_name = $3 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id.to_string())
                .bind(u.to_string()),
            None => sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id.to_string()),
        };
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no active token '{id}'")));
        }
        Self::audit(
            &mut tx,
            actor,
            None,
            "revoke",
            &format!("token:{id}"),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The principal a bearer token stands for, if the token is known, live and unexpired.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let hash = crypto::hex(&self.hasher.hash(token));
        let Some(r) = sqlx::query(
            "SELECT t.id, t.user_name, t.expires_at, t.revoked_at, u.is_admin FROM admin_tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let expires: Option<i64> = r.try_get(2)?;
        let revoked: Option<i64> = r.try_get(3)?;
        if revoked.is_some() || expires.is_some_and(|e| e <= now_ms()) {
            return Ok(None);
        }
        let user: String = r.try_get(1)?;
        let is_admin: i64 = r.try_get(4)?;
        let roles = sqlx::query("SELECT project, role FROM user_roles WHERE user_name = $1")
            .bind(user.clone())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<HashMap<String, String>, StoreError>>()?;
        Ok(Some(Principal {
            user,
            is_admin: is_admin != 0,
            roles,
            token_id: r.try_get(0)?,
        }))
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, StoreError> {
        let mut roles: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for r in sqlx::query("SELECT user_name, project, role FROM user_roles")
            .fetch_all(&self.pool)
            .await?
        {
            roles
                .entry(r.try_get(0)?)
                .or_default()
                .insert(r.try_get(1)?, r.try_get(2)?);
        }
        sqlx::query("SELECT name, is_admin, created_at FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                Ok(UserInfo {
                    roles: roles.remove(&name).unwrap_or_default(),
                    is_admin: r.try_get::<i64, _>(1)? != 0,
                    created_at: r.try_get(2)?,
                    name,
                })
            })
            .collect()
    }

    /// Create a user (not an admin) with roles per project.
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
        roles: &BTreeMap<String, String>,
    ) -> Result<UserInfo, StoreError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(StoreError::Invalid(
                "a user name is 1 to 64 letters, digits or - _ . @".into(),
            ));
        }
        check_password_rule(password)?;
        let hash = hash_blocking(password.to_string()).await?;
        let mut tx = self.pool.begin().await?;
        if sqlx::query("SELECT name FROM users WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "a user named '{name}' already exists"
            )));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, 0, $3)",
        )
        .bind(name.to_string())
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::set_roles_in(&mut tx, name, roles).await?;
        let after = serde_json::json!({"name": name, "roles": roles});
        Self::audit(
            &mut tx,
            actor,
            None,
            "create",
            &format!("user:{name}"),
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(UserInfo {
            name: name.to_string(),
            is_admin: false,
            roles: roles.clone(),
            created_at: now,
        })
    }

    async fn set_roles_in(
        tx: &mut Tx<'_>,
        name: &str,
        roles: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM user_roles WHERE user_name = $1")
            .bind(name.to_string())
            .execute(&mut **tx)
            .await?;
        for (project, role) in roles {
            if !ROLES.contains(&role.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "unknown role '{role}' (owner, editor, viewer)"
                )));
            }
            Self::need_project(tx, project).await?;
            sqlx::query("INSERT INTO user_roles (user_name, project, role) VALUES ($1, $2, $3)")
                .bind(name.to_string())
                .bind(project.clone())
                .bind(role.clone())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub async fn set_roles(
        &self,
        actor: &Actor,
        name: &str,
        roles: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("SELECT is_admin FROM users WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no user named '{name}'")))?;
        if r.try_get::<i64, _>(0)? != 0 {
            return Err(StoreError::Invalid(
                "the built-in admin has every right; it takes no roles".into(),
            ));
        }
        Self::set_roles_in(&mut tx, name, roles).await?;
        let after = serde_json::json!({"roles": roles});
        Self::audit(
            &mut tx,
            actor,
            None,
            "update",
            &format!("user:{name}"),
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<(), StoreError> {
        if name == "admin" {
            return Err(StoreError::Invalid(
                "the built-in admin cannot be deleted".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM admin_tokens WHERE user_name = $1")
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_roles WHERE user_name = $1")
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user named '{name}'")));
        }
        Self::audit(
            &mut tx,
            actor,
            None,
            "delete",
            &format!("user:{name}"),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Set a user's password and revoke all their tokens.
    pub async fn set_password(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        check_password_rule(password)?;
        let hash = hash_blocking(password.to_string()).await?;
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user named '{name}'")));
        }
        sqlx::query(
            "UPDATE admin_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(name.to_string())
        .execute(&mut *tx)
        .await?;
        Self::audit(
            &mut tx,
            actor,
            None,
            "reset-password",
            &format!("user:{name}"),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Re-encrypt every credential and the store's own secrets under `new`, in one transaction.
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE meta SET config_version = config_version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query("SELECT name, ciphertext FROM credentials")
            .fetch_all(&mut *tx)
            .await?;
        let mut n = 0;
        for r in &rows {
            let name: String = r.try_get(0)?;
            let sealed: String = r.try_get(1)?;
            let aad = format!("credential:{name}");
            let plain = crypto::open(&self.master, &aad, &sealed)?;
            sqlx::query("UPDATE credentials SET ciphertext = $1 WHERE name = $2")
                .bind(crypto::seal(new, &aad, &plain)?)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        sqlx::query("UPDATE meta SET master_check = $1, key_hash_secret = $2 WHERE id = 1")
            .bind(crypto::seal(new, "meta:master_check", MASTER_CHECK)?)
            .bind(crypto::seal(new, "meta:key_hash_secret", &self.hasher_key)?)
            .execute(&mut *tx)
            .await?;
        Self::audit(
            &mut tx,
            &Actor("cli".into()),
            None,
            "rotate-master-key",
            "store",
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}

fn check_if_match(
    kind: &str,
    name: &str,
    if_match: Option<i64>,
    current: Option<i64>,
) -> Result<(), StoreError> {
    match (if_match, current) {
        (Some(want), Some(have)) if want != have => Err(StoreError::Stale(format!(
            "{kind} '{name}' is at version {have}, not {want}: it changed since you read it; read it again and reapply your change"
        ))),
        (Some(want), None) => Err(gone_at(kind, name, want)),
        _ => Ok(()),
    }
}

/// If-Match named a version of an object that does not exist.
fn gone_at(kind: &str, name: &str, want: i64) -> StoreError {
    StoreError::Stale(format!(
        "{kind} '{name}' does not exist (If-Match named version {want})"
    ))
}

/// The rule every password is set by: at least 8 characters, not all of them spaces.
fn check_password_rule(password: &str) -> Result<(), StoreError> {
    if password.chars().count() < 8 || password.trim().is_empty() {
        return Err(StoreError::Invalid(
            "a password needs at least 8 characters, not all spaces".into(),
        ));
    }
    Ok(())
}

fn http_header_unsafe(v: &str) -> bool {
    v.trim().bytes().any(|b| b < 0x20 || b == 0x7f)
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| crypto::hash_password("signalbox-dummy").unwrap_or_default())
        .clone()
}

async fn verify_blocking(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

async fn hash_blocking(password: String) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(|e| StoreError::Crypto(format!("password hashing task: {e}")))?
}

//! Signalbox's control-plane store: the catalog (projects, providers, models, targets, routes,
//! functions, credentials, gateway keys), accounts and tokens, route history and the audit log,
//! on embedded SQLite or PostgreSQL through one set of portable SQL.
//!
//! Every change runs in one transaction that first bumps `meta.config_version` (which also
//! serialises writers), applies the change, reloads the whole catalog and hands it to a check
//! (the server builds and validates a complete snapshot). Only a change whose check passes
//! commits; anything else rolls back, so nothing is ever half-applied.

pub mod crypto;
mod migrate;
mod store;
mod trace_db;
// The one module with unsafe code: SQLite's own binding calls (see its header).
#[allow(unsafe_code)]
mod trace_insert;
mod traces;
pub use traces::{Aggregate, GROUPS, TraceFilter, TracePage, TraceRow};
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

pub use crypto::{MasterKey, write_secret_file};
pub use store::*;

use signalbox_core::config::ConfigErrors;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("{0}")]
    Crypto(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named another version than the stored one.
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    Invalid(String),
    /// The change would make the config invalid.
    #[error("{0}")]
    Rejected(ConfigErrors),
    /// A write's check refused it for a reason other than the config's validity (the writer
    /// may not make this change); nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error("database schema version {0} is newer than this binary knows ({1}); upgrade Signalbox")]
    TooNew(i64, i64),
}

impl From<ConfigErrors> for StoreError {
    fn from(errs: ConfigErrors) -> Self {
        StoreError::Rejected(errs)
    }
}

/// Fresh databases for tests: a SQLite file, and a new PostgreSQL database when
/// `SIGNALBOX_TEST_PG_URL` names a server (the test command starts one). In CI a missing
/// PostgreSQL is an error, never a silent skip.
#[doc(hidden)]
#[allow(clippy::panic)]
pub mod testing {
    use sqlx::Connection;

    pub async fn fresh_urls(dir: &std::path::Path) -> Vec<String> {
        let mut urls = vec![format!("sqlite://{}", dir.join("store.db").display())];
        if let Some(pg) = fresh_postgres().await {
            urls.push(pg);
        }
        urls
    }

    /// A new, empty PostgreSQL database, or None when no server is configured (outside CI).
    pub async fn fresh_postgres() -> Option<String> {
        let base = match std::env::var("SIGNALBOX_TEST_PG_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                assert!(
                    std::env::var("CI").is_err(),
                    "SIGNALBOX_TEST_PG_URL is not set: the test command starts PostgreSQL (scripts/pg.sh)"
                );
                return None;
            }
        };
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        // Named but unreachable is a failure, never a silent skip.
        let mut conn = match sqlx::PgConnection::connect(&base).await {
            Ok(c) => c,
            Err(e) => panic!("SIGNALBOX_TEST_PG_URL is set but PostgreSQL is unreachable: {e}"),
        };
        if let Err(e) =
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await
        {
            panic!("cannot create a test database: {e}");
        }
        let cut = base.rfind('/')?;
        Some(format!("{}/{name}", &base[..cut]))
    }
}

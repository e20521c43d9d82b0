//! Versioned migrations, embedded in the binary and applied in order, each in its own
//! transaction. On PostgreSQL an advisory lock keeps two starting nodes from racing.

use crate::StoreError;
use crate::store::Backend;
use sqlx::{AnyPool, Row};

/// A migration: version, description, its SQL, and (when PostgreSQL's differs) the SQL for
/// PostgreSQL, `""` for a migration that concerns SQLite only.
pub(crate) type Migration = (i64, &'static str, &'static str, Option<&'static str>);

pub(crate) const MIGRATIONS: &[Migration] = &[
    (
        1,
        "catalog",
        include_str!("../migrations/0001_catalog.sql"),
        None,
    ),
    (
        2,
        "traces",
        include_str!("../migrations/0002_traces.sql"),
        None,
    ),
    (
        3,
        "trace content",
        include_str!("../migrations/0003_trace_content.sql"),
        None,
    ),
    (
        4,
        "trace params",
        include_str!("../migrations/0004_trace_params.sql"),
        None,
    ),
    (
        5,
        "drop traces_at",
        include_str!("../migrations/0005_drop_traces_at.sql"),
        None,
    ),
    (
        6,
        "traces without an id index",
        include_str!("../migrations/0006_traces_rowid.sql"),
        Some(""),
    ),
    (
        7,
        "traces_project_at without id",
        include_str!("../migrations/0007_traces_project_at.sql"),
        Some(""),
    ),
];

/// Apply what is missing; returns the versions applied now. Everything runs on one
/// connection; on PostgreSQL it first takes a session advisory lock, so nodes starting at
/// once on an empty database take turns (the second finds the work done), from the very
/// first `CREATE TABLE` on. The connection is closed afterwards, which releases the lock
/// whatever happened.
pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<Vec<i64>, StoreError> {
    use sqlx::Connection;
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock(7413520001)")
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let mut applied_now = Vec::new();
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    for &(version, description, sql, postgres) in MIGRATIONS {
        let sql = match (backend, postgres) {
            (Backend::Postgres, Some(pg)) => pg,
            _ => sql,
        };
        let mut tx = conn.begin().await?;
        let max: Option<i64> = sqlx::query("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if let Some(m) = max
            && m > latest
        {
            return Err(StoreError::TooNew(m, latest));
        }
        let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if done {
            tx.rollback().await?;
            continue;
        }
        for stmt in statements(sql) {
            sqlx::query(&stmt).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(description)
        .bind(crate::store::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied_now.push(version);
    }
    Ok(applied_now)
}

/// Split a migration into statements: `;` at a line end, `--` comments dropped.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let line = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

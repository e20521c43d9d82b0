//! Trace records: batched inserts, retention, filtered queries with cursor pagination, and
//! aggregates (counts and sums in SQL; nearest-rank percentiles over the matching rows,
//! streamed out and sorted here, the same on SQLite and PostgreSQL).

use crate::StoreError;
use crate::store::{Backend, Store};
use serde::Serialize;
use serde_json::Value;
use signalbox_core::trace::TraceRecord;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMN_COUNT: usize = 33;
pub(crate) const COLUMNS: &str = "id, project, at, client_request_id, key_id, endpoint, requested_model, layer, route, route_version, assigned_variant, serving_variant, sticky_source, provider, target, model, attempt_count, attempts_json, status, error_code, latency_ms, ttft_ms, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, stream, user_id, session_id, trace_id, content_json, params_json";

/// A stored trace, as the query API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceRow {
    pub id: String,
    pub project: String,
    pub time: i64,
    pub client_request_id: Option<String>,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub requested_model: Option<String>,
    pub layer: Option<String>,
    pub route: Option<String>,
    pub route_version: Option<i64>,
    pub assigned_variant: Option<String>,
    pub serving_variant: Option<String>,
    pub sticky_source: Option<String>,
    pub provider: Option<String>,
    pub target: Option<String>,
    pub model: Option<String>,
    pub attempt_count: i64,
    pub attempts: Value,
    pub status: i64,
    pub error_code: Option<String>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub stream: bool,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    /// Captured request and answer text (projects with content capture on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// A variant's generation params and the caller's values they overrode.
    pub params: Option<Value>,
}

fn row(r: &AnyRow) -> Result<TraceRow, StoreError> {
    let attempts: String = r.try_get("attempts_json")?;
    Ok(TraceRow {
        id: r.try_get("id")?,
        project: r.try_get("project")?,
        time: r.try_get("at")?,
        client_request_id: r.try_get("client_request_id")?,
        key_id: r.try_get("key_id")?,
        endpoint: r.try_get("endpoint")?,
        requested_model: r.try_get("requested_model")?,
        layer: r.try_get("layer")?,
        route: r.try_get("route")?,
        route_version: r.try_get("route_version")?,
        assigned_variant: r.try_get("assigned_variant")?,
        serving_variant: r.try_get("serving_variant")?,
        sticky_source: r.try_get("sticky_source")?,
        provider: r.try_get("provider")?,
        target: r.try_get("target")?,
        model: r.try_get("model")?,
        attempt_count: r.try_get("attempt_count")?,
        attempts: serde_json::from_str(&attempts).unwrap_or(Value::Null),
        status: r.try_get("status")?,
        error_code: r.try_get("error_code")?,
        latency_ms: r.try_get("latency_ms")?,
        ttft_ms: r.try_get("ttft_ms")?,
        input_tokens: r.try_get("input_tokens")?,
        output_tokens: r.try_get("output_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        reasoning_tokens: r.try_get("reasoning_tokens")?,
        cost_usd: r.try_get("cost_usd")?,
        stream: r.try_get::<i64, _>("stream")? != 0,
        user_id: r.try_get("user_id")?,
        session_id: r.try_get("session_id")?,
        trace_id: r.try_get("trace_id")?,
        content: r
            .try_get::<Option<String>, _>("content_json")?
            .and_then(|c| serde_json::from_str(&c).ok()),
        params: r
            .try_get::<Option<String>, _>("params_json")?
            .and_then(|c| serde_json::from_str(&c).ok()),
    })
}

/// The W3C trace id of a `traceparent` header.
fn trace_id(traceparent: Option<&str>) -> Option<String> {
    let tp = traceparent?;
    let mut parts = tp.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// Filters of the query API; every one optional.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub project: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// An exact status (`429`), a class (`4xx`), `error` (>= 400) or `ok` (< 400).
    pub status: Option<String>,
    pub endpoint: Option<String>,
    /// A route label (`route:x`, `function:x`, ...) or a bare route name.
    pub route: Option<String>,
    /// Route labels, any of which matches (an experiment's route and the functions that run
    /// it); empty: no such filter.
    pub route_any: Vec<String>,
    pub variant: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub min_tokens: Option<i64>,
    pub max_tokens: Option<i64>,
}

#[derive(Clone)]
pub(crate) enum Bind {
    I(i64),
    S(String),
}

/// A WHERE clause with `$n` placeholders, and its values in order.
struct Where {
    sql: String,
    binds: Vec<Bind>,
}

impl Where {
    fn new() -> Where {
        Where {
            sql: String::new(),
            binds: Vec::new(),
        }
    }
    fn and(&mut self, clause: &str, values: Vec<Bind>) {
        let mut c = clause.to_string();
        for v in values {
            self.binds.push(v);
            let n = self.binds.len();
            c = c.replacen('?', &format!("${n}"), 1);
        }
        self.sql.push_str(if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        });
        self.sql.push_str(&c);
    }
    fn build(f: &TraceFilter) -> Result<Where, StoreError> {
        let mut w = Where::new();
        w.and("project = ?", vec![Bind::S(f.project.clone())]);
        if let Some(t) = f.from_ms {
            w.and("at >= ?", vec![Bind::I(t)]);
        }
        if let Some(t) = f.to_ms {
            w.and("at < ?", vec![Bind::I(t)]);
        }
        if let Some(s) = &f.status {
            match s.as_str() {
                // A stream cut after its first byte keeps status 200 but is an error.
                "error" => w.and("(status >= 400 OR error_code IS NOT NULL)", vec![]),
                "ok" => w.and("(status < 400 AND error_code IS NULL)", vec![]),
                c if c.len() == 3 && c.ends_with("xx") => {
                    let d = c[..1]
                        .parse::<i64>()
                        .ok()
                        .filter(|d| (1..=5).contains(d))
                        .ok_or_else(|| {
                            StoreError::Invalid(format!("status '{s}': use 200, 4xx, ok or error"))
                        })?;
                    w.and(
                        "status >= ? AND status < ?",
                        vec![Bind::I(d * 100), Bind::I(d * 100 + 100)],
                    );
                }
                n => {
                    // 499 is the gateway's own code for a caller that went away.
                    let n = n
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (100..=599).contains(n))
                        .ok_or_else(|| {
                            StoreError::Invalid(format!("status '{s}': use 200, 4xx, ok or error"))
                        })?;
                    w.and("status = ?", vec![Bind::I(n)]);
                }
            }
        }
        if let Some(v) = &f.endpoint {
            w.and("endpoint = ?", vec![Bind::S(v.clone())]);
        }
        if let Some(v) = &f.route {
            if v.contains(':') {
                w.and("route = ?", vec![Bind::S(v.clone())]);
            } else {
                w.and(
                    "(route = ? OR route = ?)",
                    vec![
                        Bind::S(format!("route:{v}")),
                        Bind::S(format!("function:{v}")),
                    ],
                );
            }
        }
        if !f.route_any.is_empty() {
            let marks = vec!["?"; f.route_any.len()].join(", ");
            w.and(
                &format!("route IN ({marks})"),
                f.route_any.iter().map(|r| Bind::S(r.clone())).collect(),
            );
        }
        if let Some(v) = &f.variant {
            // A request that failed everywhere has no serving variant: it counts for the one
            // it was assigned.
            w.and(
                "COALESCE(serving_variant, assigned_variant) = ?",
                vec![Bind::S(v.clone())],
            );
        }
        if let Some(v) = &f.provider {
            w.and("provider = ?", vec![Bind::S(v.clone())]);
        }
        if let Some(v) = &f.model {
            w.and("model = ?", vec![Bind::S(v.clone())]);
        }
        if let Some(v) = &f.key_id {
            w.and("key_id = ?", vec![Bind::S(v.clone())]);
        }
        if let Some(v) = &f.user_id {
            w.and("user_id = ?", vec![Bind::S(v.clone())]);
        }
        if let Some(v) = &f.session_id {
            w.and("session_id = ?", vec![Bind::S(v.clone())]);
        }
        if let Some(n) = f.min_tokens {
            w.and(
                "COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) >= ?",
                vec![Bind::I(n)],
            );
        }
        if let Some(n) = f.max_tokens {
            w.and(
                "COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) <= ?",
                vec![Bind::I(n)],
            );
        }
        Ok(w)
    }
}

/// The SQL of a page of traces (its LIMIT the last placeholder, after `binds`).
pub(crate) fn page_query(
    f: &TraceFilter,
    oldest_first: bool,
    cursor: Option<&str>,
) -> Result<(String, Vec<Bind>), StoreError> {
    let mut w = Where::build(f)?;
    if let Some(c) = cursor {
        let (at, id) = c
            .split_once('.')
            .and_then(|(a, i)| Some((a.parse::<i64>().ok()?, i.to_string())))
            .ok_or_else(|| StoreError::Invalid("invalid cursor".into()))?;
        // `at <= ?` (or `>=`) on its own, so the index seeks to the page's start instead of
        // reading the entry of every trace before it.
        let op = if oldest_first { ">" } else { "<" };
        w.and(
            &format!("at {op}= ? AND (at {op} ? OR id {op} ?)"),
            vec![Bind::I(at), Bind::I(at), Bind::S(id)],
        );
    }
    let dir = if oldest_first { "ASC" } else { "DESC" };
    let n = w.binds.len() + 1;
    let sql = format!(
        "SELECT {COLUMNS} FROM traces{} ORDER BY at {dir}, id {dir} LIMIT ${n}",
        w.sql
    );
    Ok((sql, w.binds))
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::I(i) => q.bind(*i),
            Bind::S(s) => q.bind(s.clone()),
        };
    }
    q
}

/// One page of traces, newest first (or oldest first), and the cursor of the next page.
#[derive(Debug, Serialize)]
pub struct TracePage {
    pub data: Vec<TraceRow>,
    pub next_cursor: Option<String>,
}

/// Grouped figures over a time range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Aggregate {
    pub group: Option<String>,
    pub requests: i64,
    pub errors: i64,
    pub error_rate: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    /// How many streamed requests the TTFT figures are over.
    pub ttft_count: i64,
    pub ttft_ms_p50: Option<f64>,
    pub ttft_ms_p95: Option<f64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    /// Sum over requests with a known price; `priced_requests` says how many.
    pub cost_usd: Option<f64>,
    pub priced_requests: i64,
    /// How many requests the percentiles were read from: all of them, or an evenly spread
    /// sample when the aggregate covers more than [`PERCENTILE_SAMPLE`] requests.
    pub percentile_sample: i64,
}

/// About the most latencies an aggregate reads for its percentiles. Over more requests
/// than this, each group is sampled (every k-th millisecond of arrival time, k the same for
/// every group), except that a group keeps at least a tenth of this many (or all it has),
/// so a month-long aggregate over millions of requests costs what one over a few days
/// does. Counts, sums, error rates, tokens and cost are always exact.
pub const PERCENTILE_SAMPLE: i64 = 200_000;

/// Nearest-rank percentile of sorted values: the value at rank ceil(p/100 * n).
fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

pub const GROUPS: &[&str] = &[
    "route",
    "variant",
    "assigned_variant",
    "provider",
    "model",
    "endpoint",
    "status",
];

fn group_column(by: &str) -> Result<&'static str, StoreError> {
    Ok(match by {
        "route" => "route",
        "variant" => "COALESCE(serving_variant, assigned_variant)",
        // The variant the request was assigned, whichever served it: the error rate of a
        // variant that always fails over is its own here, not hidden in the others'.
        "assigned_variant" => "assigned_variant",
        "provider" => "provider",
        "model" => "model",
        "endpoint" => "endpoint",
        "status" => "CAST(status AS TEXT)",
        other => {
            return Err(StoreError::Invalid(format!(
                "cannot group by '{other}' (route, variant, assigned_variant, provider, model, endpoint, status)"
            )));
        }
    })
}

/// Rows a trace INSERT statement holds: a batch goes as statements of these sizes, largest
/// first (33 values a row: well under either database's limit), so at most four statements
/// are ever prepared and a batch of n rows needs about n/64 + 6 of them.
pub(crate) const SLICE_ROWS: [usize; 4] = [64, 16, 4, 1];

/// How far a stored trace's `at` may be from its id's time: none for traces stored since the
/// time was taken from the id, a clock reading apart before.
const ID_TIME_SLACK_MS: i64 = 2_000;

/// The time (Unix milliseconds) a trace id carries; `None` for an id the gateway never makes.
fn id_time_ms(id: &str) -> Option<i64> {
    let ms = signalbox_core::trace::id_time_ms(&uuid::Uuid::try_parse(id).ok()?)?;
    i64::try_from(ms).ok()
}

/// The INSERT for `rows` rows (one of [`SLICE_ROWS`]), built once per process.
pub(crate) fn insert_sql(rows: usize, sqlite: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[[String; 4]; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [false, true].map(|sqlite| SLICE_ROWS.map(|rows| build_insert_sql(rows, sqlite)))
    });
    let i = SLICE_ROWS.iter().position(|&n| n == rows).unwrap_or(3);
    &all[usize::from(sqlite)][i]
}

fn build_insert_sql(rows: usize, sqlite: bool) -> String {
    // On SQLite, `OR FAIL`: a row that breaks a constraint stops the statement without
    // undoing its earlier rows, so SQLite keeps no statement journal for a multi-row INSERT
    // (~1.7k instructions a row copying pages aside). A batch is one transaction that rolls
    // back whole on any error, so nothing half-written is ever committed.
    let verb = if sqlite { "INSERT OR FAIL" } else { "INSERT" };
    let mut sql = format!("{verb} INTO traces ({COLUMNS}) VALUES ");
    let mut n = 0;
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..COLUMN_COUNT {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            // SQLite gets anonymous `?` placeholders: binding a numbered one looks its name
            // up in a list as long as the statement's parameters, which made a 64-row insert
            // quadratic (a fifth of all the gateway's instructions with traces stored).
            if sqlite {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
        sql.push(')');
    }
    // PostgreSQL can learn nothing of a commit whose answer a dropped connection lost, and the
    // writer then retries the batch: rows already stored are skipped over its `id` key. An
    // SQLite commit always answers, and its table keeps no `id` index (migration 0006).
    if !sqlite {
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
    }
    sql
}

impl Store {
    /// Store a batch (see [`Store::write_traces`]).
    pub async fn insert_traces(&self, batch: &[TraceRecord]) -> Result<(), StoreError> {
        if self.trace_db.is_some() {
            return self.write_traces(batch.to_vec()).await.1;
        }
        self.insert_traces_sqlx(batch).await
    }

    /// Store a batch, moved in and handed back with the outcome. On a SQLite file it is
    /// written by the trace writer's own connection and thread (`trace_db`); otherwise
    /// through the pool.
    pub async fn write_traces(
        &self,
        batch: Vec<TraceRecord>,
    ) -> (Vec<TraceRecord>, Result<(), StoreError>) {
        let batch = match &self.trace_db {
            Some(db) => match db.write(batch).await {
                Ok(reply) => return reply,
                Err(back) => {
                    tracing::warn!("trace writer thread is gone; writing traces through the pool");
                    back
                }
            },
            None => batch,
        };
        let written = self.insert_traces_sqlx(&batch).await;
        (batch, written)
    }

    /// Through sqlx: many rows per statement (one round trip to the database per slice, not
    /// per record); several statements go in one transaction.
    async fn insert_traces_sqlx(&self, batch: &[TraceRecord]) -> Result<(), StoreError> {
        let sqlite = self.backend() == Backend::Sqlite;
        let mut conn = self.pool().acquire().await?;
        // Trace batches commit without waiting for the disk on SQLite (WAL with synchronous =
        // NORMAL: a crash of the process loses nothing; a power cut may lose the last batches,
        // never corrupt the file). Catalog writes keep FULL: the connection is put back.
        // The statement journal of a multi-row INSERT inside the batch's transaction (the rows
        // it would take back if it failed half-way) is kept in memory rather than in a
        // temporary file: a write system call per page otherwise (~3% of the gateway's CPU
        // under load, BENCHMARKS.md). Only while the batch is written: other queries keep
        // SQLite's default, so a large sort still spills to disk.
        let slices = slices(batch, SLICE_ROWS[0]);
        // Worth two more round trips only for batches that touch many pages.
        let journal_in_memory = slices.len() > 1 && batch.len() >= 64;
        if sqlite {
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *conn)
                .await?;
            if journal_in_memory {
                sqlx::query("PRAGMA temp_store = MEMORY")
                    .execute(&mut *conn)
                    .await?;
            }
        }
        let written = self.insert_traces_on(&mut conn, slices).await;
        if sqlite {
            let reset = async {
                if journal_in_memory {
                    sqlx::query("PRAGMA temp_store = DEFAULT")
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await
            };
            if reset.await.is_err() {
                // Never hand a connection that would skip the catalog's fsync back to the pool.
                conn.close_on_drop();
            }
        }
        written
    }

    async fn insert_traces_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        slices: Vec<&[TraceRecord]>,
    ) -> Result<(), StoreError> {
        use sqlx::Connection;
        let sqlite = self.backend() == Backend::Sqlite;
        // A batch of several statements is one transaction (one commit); a single statement
        // commits on its own on PostgreSQL, without BEGIN/COMMIT round trips (SQLite's
        // `INSERT OR FAIL` would commit the rows before a failing one: a transaction there).
        // A batch that fails stores nothing; on PostgreSQL rows already stored are skipped
        // (`ON CONFLICT DO NOTHING`), so a batch retried after a lost answer never stores a
        // row twice.
        if let [slice] = slices[..]
            && !sqlite
        {
            let made: Vec<Made> = slice.iter().map(Made::of).collect();
            insert_query(slice, &made, sqlite)
                .execute(&mut **conn)
                .await?;
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        for slice in slices {
            let made: Vec<Made> = slice.iter().map(Made::of).collect();
            insert_query(slice, &made, sqlite).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Delete traces older than `cutoff_ms`, project by project over `traces_project_at`, in
    /// slices so no transaction grows large.
    pub async fn delete_traces_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        for project in self.traced_projects().await? {
            // SQLite's table has no `id` index: its rows go by rowid.
            let key = match self.backend() {
                Backend::Sqlite => "rowid",
                Backend::Postgres => "id",
            };
            let sql = format!(
                "DELETE FROM traces WHERE {key} IN \
                 (SELECT {key} FROM traces WHERE project = $1 AND at < $2 LIMIT 5000)"
            );
            loop {
                let n = sqlx::query(&sql)
                    .bind(project.as_str())
                    .bind(cutoff_ms)
                    .execute(self.pool())
                    .await?
                    .rows_affected();
                total += n;
                if n < 5000 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// The projects that have traces (a deleted project's included), one index lookup each
    /// (`MIN(project)` above the last one): a `DISTINCT` would read the whole index.
    async fn traced_projects(&self) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let next: Option<String> = match out.last() {
                None => sqlx::query("SELECT MIN(project) FROM traces")
                    .fetch_one(self.pool())
                    .await?
                    .try_get(0)?,
                Some(last) => sqlx::query("SELECT MIN(project) FROM traces WHERE project > $1")
                    .bind(last.as_str())
                    .fetch_one(self.pool())
                    .await?
                    .try_get(0)?,
            };
            match next {
                Some(p) => out.push(p),
                None => return Ok(out),
            }
        }
    }

    /// One trace by its id. A trace id is a UUIDv7 whose time is the trace's `at` (older
    /// rows: within a few milliseconds), so the lookup is a short range of
    /// `traces_project_at`; an id that is no UUIDv7 names no trace.
    pub async fn trace(&self, project: &str, id: &str) -> Result<TraceRow, StoreError> {
        let missing = || StoreError::NotFound(format!("no trace '{id}' in project '{project}'"));
        let at = id_time_ms(id).ok_or_else(missing)?;
        let r = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM traces WHERE project = $1 AND at >= $2 AND at <= $3 AND id = $4"
        ))
        .bind(project.to_string())
        .bind(at - ID_TIME_SLACK_MS)
        .bind(at + ID_TIME_SLACK_MS)
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(missing)?;
        row(&r)
    }

    /// A page of traces. `cursor` is the `next_cursor` of the previous page.
    pub async fn traces(
        &self,
        f: &TraceFilter,
        oldest_first: bool,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<TracePage, StoreError> {
        let limit = limit.clamp(1, 1000);
        let (sql, binds) = page_query(f, oldest_first, cursor)?;
        let rows = bind_all(sqlx::query(&sql), &binds)
            .bind(limit + 1)
            .fetch_all(self.pool())
            .await?;
        let mut data = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if data.len() as i64 > limit {
            data.truncate(limit as usize);
            data.last().map(|r| format!("{}.{}", r.time, r.id))
        } else {
            None
        };
        Ok(TracePage { data, next_cursor })
    }

    /// Figures per group (`route`, `variant`, `provider`, `model`, `endpoint`, `status`) or
    /// over everything (`by` None).
    pub async fn aggregate(
        &self,
        f: &TraceFilter,
        by: Option<&str>,
    ) -> Result<Vec<Aggregate>, StoreError> {
        self.aggregate_sampled(f, by, PERCENTILE_SAMPLE).await
    }

    /// [`Store::aggregate`] with the sampling budget given (tests use a small one).
    pub async fn aggregate_sampled(
        &self,
        f: &TraceFilter,
        by: Option<&str>,
        sample: i64,
    ) -> Result<Vec<Aggregate>, StoreError> {
        let sample = sample.max(1);
        let w = Where::build(f)?;
        let g = match by {
            Some(b) => group_column(b)?,
            None => "CAST(NULL AS TEXT)",
        };
        let sums = format!(
            // SUM of integers is NUMERIC on PostgreSQL: cast back to BIGINT for both.
            "SELECT {g} AS grp, COUNT(*), CAST(SUM(CASE WHEN status >= 400 OR error_code IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(COALESCE(input_tokens, 0)) AS BIGINT), CAST(SUM(COALESCE(output_tokens, 0)) AS BIGINT), \
             CAST(SUM(COALESCE(cached_tokens, 0)) AS BIGINT), \
             SUM(cost_usd), COUNT(cost_usd), COUNT(ttft_ms) FROM traces{} GROUP BY {g}",
            w.sql
        );
        // Both reads from one snapshot: traces that land between them would otherwise be in the
        // latencies and not in the counts (a `percentile_sample` over `requests`).
        let mut tx = self.pool().begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let mut out: Vec<Aggregate> = Vec::new();
        for r in bind_all(sqlx::query(&sums), &w.binds)
            .fetch_all(&mut *tx)
            .await?
        {
            let requests: i64 = r.try_get(1)?;
            let errors: i64 = r.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
            out.push(Aggregate {
                group: r.try_get(0)?,
                requests,
                errors,
                error_rate: if requests > 0 {
                    errors as f64 / requests as f64
                } else {
                    0.0
                },
                latency_ms_p50: None,
                latency_ms_p95: None,
                latency_ms_p99: None,
                ttft_count: r.try_get(8)?,
                ttft_ms_p50: None,
                ttft_ms_p95: None,
                input_tokens: r.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
                output_tokens: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
                cached_tokens: r.try_get::<Option<i64>, _>(5)?.unwrap_or(0),
                cost_usd: r.try_get(6)?,
                priced_requests: r.try_get(7)?,
                percentile_sample: requests,
            });
        }
        // Percentiles, nearest rank (rank = ceil(p/100 * n)): the matching latencies are
        // streamed out (two columns a row) and sorted here. Measured against picking the
        // ranks in SQL (window functions, or ORDER BY ... OFFSET per figure), this was the
        // fastest on both databases; see BENCHMARKS.md.
        // Over budget, every k-th millisecond (at % k = 0) keeps about 1/k of a group's
        // requests, spread over its time range; a group keeps at least a tenth of the budget.
        // Groups without a value (requests with no route, say) are read whole when grouping.
        let mut w = w;
        let total: i64 = out.iter().map(|a| a.requests).sum();
        let k_all = (total + sample - 1) / sample;
        let floor = (sample / 10).max(1);
        let sampled: Vec<(Option<String>, i64)> = if total <= sample {
            Vec::new()
        } else {
            out.iter()
                .filter(|a| by.is_none() || a.group.is_some())
                .map(|a| (a.group.clone(), k_all.min(a.requests / floor).max(1)))
                .filter(|(_, k)| *k > 1)
                .collect()
        };
        if by.is_none() {
            if let Some((_, k)) = sampled.first() {
                w.and("(at % ?) = 0", vec![Bind::I(*k)]);
            }
        } else if !sampled.is_empty() {
            let mut case = String::from("(at % (CASE");
            let mut binds = Vec::new();
            for (grp, k) in &sampled {
                case.push_str(&format!(" WHEN {g} = ? THEN ?"));
                binds.push(Bind::S(grp.clone().unwrap_or_default()));
                binds.push(Bind::I(*k));
            }
            case.push_str(" ELSE 1 END)) = 0");
            w.and(&case, binds);
        }
        let lat = format!(
            "SELECT {g} AS grp, latency_ms, ttft_ms FROM traces{}",
            w.sql
        );
        let mut per: std::collections::HashMap<Option<String>, (Vec<f64>, Vec<f64>)> =
            std::collections::HashMap::new();
        {
            use futures_util::TryStreamExt;
            let q = bind_all(sqlx::query(&lat), &w.binds);
            let mut rows = q.fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let grp: Option<String> = r.try_get(0)?;
                let e = match per.get_mut(&grp) {
                    Some(e) => e,
                    None => per.entry(grp).or_default(),
                };
                e.0.push(r.try_get(1)?);
                if let Some(t) = r.try_get::<Option<f64>, _>(2)? {
                    e.1.push(t);
                }
            }
        }
        tx.rollback().await?;
        for a in &mut out {
            if let Some((l, t)) = per.get_mut(&a.group) {
                a.percentile_sample = l.len() as i64;
                l.sort_unstable_by(f64::total_cmp);
                t.sort_unstable_by(f64::total_cmp);
                a.latency_ms_p50 = percentile(l, 50);
                a.latency_ms_p95 = percentile(l, 95);
                a.latency_ms_p99 = percentile(l, 99);
                a.ttft_ms_p50 = percentile(t, 50);
                a.ttft_ms_p95 = percentile(t, 95);
            }
        }
        out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.group.cmp(&b.group)));
        // Without `by` there is one group over everything, an empty one included (GROUP BY
        // over no rows gives no row).
        if by.is_none() && out.is_empty() {
            out.push(Aggregate {
                group: None,
                requests: 0,
                errors: 0,
                error_rate: 0.0,
                latency_ms_p50: None,
                latency_ms_p95: None,
                latency_ms_p99: None,
                ttft_count: 0,
                ttft_ms_p50: None,
                ttft_ms_p95: None,
                input_tokens: 0,
                output_tokens: 0,
                cached_tokens: 0,
                cost_usd: None,
                priced_requests: 0,
                percentile_sample: 0,
            });
        }
        Ok(out)
    }
}

impl signalbox_core::trace::TraceStore for Store {
    fn write(
        &self,
        batch: Vec<TraceRecord>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = signalbox_core::trace::Written> + Send + '_>,
    > {
        Box::pin(async move {
            let (batch, written) = self.write_traces(batch).await;
            (batch, written.map_err(|e| e.to_string()))
        })
    }
}

/// A batch cut into statements of [`SLICE_ROWS`] rows, none over `most`.
pub(crate) fn slices(batch: &[TraceRecord], most: usize) -> Vec<&[TraceRecord]> {
    let mut slices = Vec::new();
    let mut rest = batch;
    for size in SLICE_ROWS.into_iter().filter(|&n| n <= most) {
        while rest.len() >= size {
            let (head, tail) = rest.split_at(size);
            slices.push(head);
            rest = tail;
        }
    }
    slices
}

/// One stored value of a trace row, typed even when NULL (a PostgreSQL statement keeps the
/// parameter types it was first prepared with).
pub(crate) enum Col<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Real(Option<f64>),
}

/// The values of a row that are made rather than borrowed from the record.
pub(crate) struct Made {
    attempts: String,
    trace_id: Option<String>,
    content: Option<String>,
    params: Option<String>,
}

impl Made {
    pub(crate) fn of(r: &TraceRecord) -> Made {
        Made {
            attempts: signalbox_core::trace::attempts_json(&r.attempts),
            trace_id: r
                .otel
                .map(|o| crate::crypto::hex(&o.trace))
                .or_else(|| trace_id(r.traceparent.as_deref())),
            content: r
                .content
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
            params: r.params.as_ref().map(|p| p.to_string()),
        }
    }
}

/// A record's values in [`COLUMNS`] order: the one mapping both insert paths bind from.
pub(crate) fn columns<'a>(r: &'a TraceRecord, m: &'a Made) -> [Col<'a>; COLUMN_COUNT] {
    use Col::{Int, Real, Text};
    let last = r.attempts.last();
    let u = r.usage.as_ref();
    [
        Text(Some(&r.id)),
        Text(Some(&r.project)),
        Int(Some(r.time_unix_ms as i64)),
        Text(r.client_request_id.as_deref()),
        Text(r.key_id.as_deref()),
        Text(Some(r.endpoint)),
        Text(r.requested_model.as_deref()),
        Text(r.layer),
        Text(r.route.as_deref()),
        Int(r.route_version.map(|v| v as i64)),
        Text(r.assigned_variant.as_deref()),
        Text(r.serving_variant.as_deref()),
        Text(r.sticky_source),
        Text(last.map(|a| a.target.provider.id.as_str())),
        Text(last.map(|a| a.target.name.as_str())),
        Text(last.map(|a| a.target.model.as_str())),
        Int(Some(r.attempts.len() as i64)),
        Text(Some(&m.attempts)),
        Int(Some(i64::from(r.status))),
        Text(r.error_code),
        Real(Some(r.latency_ms)),
        Real(r.ttft_ms),
        Int(u.map(|u| u.prompt_tokens as i64)),
        Int(u.map(|u| u.completion_tokens as i64)),
        Int(u.map(|u| u.cached_tokens() as i64)),
        Int(u.map(|u| u.reasoning_tokens() as i64)),
        Real(r.cost_usd),
        Int(Some(i64::from(r.stream))),
        Text(r.user_id.as_deref()),
        Text(r.session_id.as_deref()),
        Text(m.trace_id.as_deref()),
        Text(m.content.as_deref()),
        Text(m.params.as_deref()),
    ]
}

/// One multi-row INSERT for a slice of a batch, through sqlx (PostgreSQL, and SQLite when the
/// trace writer's own connection is not available). Values are bound by reference.
fn insert_query<'a>(
    slice: &'a [TraceRecord],
    made: &'a [Made],
    sqlite: bool,
) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments<'a>> {
    let sql = insert_sql(slice.len(), sqlite);
    // On PostgreSQL a reused prepared statement keeps the parameter types of its first
    // use, and a NULL bound first (a trace without ttft_ms) then refuses a number:
    // prepare afresh there. SQLite's types are per value, so it keeps the cache.
    let mut q = sqlx::query(sql).persistent(sqlite);
    for (r, m) in slice.iter().zip(made) {
        for c in columns(r, m) {
            q = match c {
                Col::Text(v) => q.bind(v),
                Col::Int(v) => q.bind(v),
                Col::Real(v) => q.bind(v),
            };
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50), Some(50.0));
        assert_eq!(percentile(&v, 95), Some(95.0));
        assert_eq!(percentile(&v, 99), Some(99.0));
        assert_eq!(percentile(&[7.0], 99), Some(7.0));
        assert_eq!(percentile(&[200.0, 400.0], 50), Some(200.0));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn trace_ids_come_from_traceparent() {
        assert_eq!(
            trace_id(Some(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ))
            .as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id(Some("garbage")), None);
    }
}

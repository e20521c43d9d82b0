//! The trace writer's INSERTs, bound straight from the records.
//!
//! rusqlite binds every text with `SQLITE_TRANSIENT` (SQLite mallocs and copies it) and binds
//! NULLs one call each; for a 33-column trace row that was ~8k instructions, a quarter of
//! storing the row (BENCHMARKS.md, session 10). Here the statements are SQLite's own, the texts
//! are bound `SQLITE_STATIC` (read in place) and NULLs are left to `sqlite3_clear_bindings`.
//! rusqlite has no such binding (rusqlite issue #164), hence this module's unsafe code, kept to
//! one invariant: **every pointer bound is read by `sqlite3_step` inside [`Inserts::insert`],
//! and unbound before it returns**, so no borrowed text outlives the call that bound it.

use crate::traces::{Col, Made, SLICE_ROWS, columns, insert_sql};
use rusqlite::ffi;
use signalbox_core::trace::TraceRecord;
use std::ffi::c_int;
use std::ptr::NonNull;

/// A trace connection with its prepared INSERTs (one per statement size up to `most` rows).
/// The statements are declared first: they are finalized before the connection closes.
pub(crate) struct Writer {
    inserts: Inserts,
    pub(crate) conn: rusqlite::Connection,
}

struct Inserts {
    /// (rows, statement), one per size of [`SLICE_ROWS`] up to the writer's largest.
    by_rows: Vec<(usize, NonNull<ffi::sqlite3_stmt>)>,
}

// SAFETY: the statements belong to the connection they move with (a `Writer` owns both), and
// the connection is opened in SQLite's multi-thread mode, where one thread at a time may use a
// connection and its statements: a `Writer` is only ever used behind a `Mutex`.
unsafe impl Send for Inserts {}

impl Drop for Inserts {
    fn drop(&mut self) {
        for &(_, stmt) in &self.by_rows {
            // SAFETY: each statement was prepared on the writer's connection, which is still
            // open (it is dropped after this), and is finalized once, here.
            unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
        }
    }
}

impl Writer {
    /// Prepare the INSERTs of up to `most` rows on `conn` (a schema problem fails here).
    pub(crate) fn new(conn: rusqlite::Connection, most: usize) -> rusqlite::Result<Writer> {
        let mut inserts = Inserts {
            by_rows: Vec::new(),
        };
        for rows in SLICE_ROWS.into_iter().filter(|&n| n <= most) {
            let sql = insert_sql(rows, true);
            let mut stmt = std::ptr::null_mut();
            let len = c_int::try_from(sql.len()).map_err(|_| too_long())?;
            // SAFETY: the handle is the open connection's; `sql` is valid for `len` bytes;
            // the statement is owned by `inserts` and finalized by its Drop.
            let rc = unsafe {
                ffi::sqlite3_prepare_v3(
                    conn.handle(),
                    sql.as_ptr().cast(),
                    len,
                    ffi::SQLITE_PREPARE_PERSISTENT,
                    &mut stmt,
                    std::ptr::null_mut(),
                )
            };
            match NonNull::new(stmt) {
                Some(s) if rc == ffi::SQLITE_OK => inserts.by_rows.push((rows, s)),
                _ => return Err(failure(&conn, rc)),
            }
        }
        Ok(Writer { inserts, conn })
    }

    /// Insert `rows` (a slice of one of the prepared sizes) in one statement, in whatever
    /// transaction is open on the connection.
    pub(crate) fn insert(&self, rows: &[TraceRecord]) -> rusqlite::Result<()> {
        let Some(&(_, stmt)) = self.inserts.by_rows.iter().find(|(n, _)| *n == rows.len()) else {
            return Err(rusqlite::Error::InvalidParameterCount(rows.len(), 0));
        };
        let stmt = stmt.as_ptr();
        // Everything bound below borrows from `rows` and `made`, which outlive this call.
        let made: Vec<Made> = rows.iter().map(Made::of).collect();
        let bound = bind(stmt, rows, &made);
        // SAFETY: `stmt` is a live statement of this connection; stepping reads the bound
        // values, all still alive here.
        let rc = match bound {
            Ok(()) => unsafe { ffi::sqlite3_step(stmt) },
            Err(rc) => rc,
        };
        let outcome = if rc == ffi::SQLITE_DONE {
            Ok(())
        } else {
            Err(failure(&self.conn, rc))
        };
        // SAFETY: as above. Reset ends the statement (an error included) and clearing the
        // bindings drops every pointer into `rows` and `made` before they go.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        outcome
    }
}

/// Bind a slice's values in [`columns`] order; NULLs are skipped (the statement's bindings
/// were cleared after its last use, and a fresh statement starts with all NULL).
fn bind(stmt: *mut ffi::sqlite3_stmt, rows: &[TraceRecord], made: &[Made]) -> Result<(), c_int> {
    let mut i: c_int = 0;
    for (r, m) in rows.iter().zip(made) {
        for c in columns(r, m) {
            i += 1;
            // SAFETY: `stmt` is live and `i` within its parameters (the SQL has one `?` per
            // column of every row); a text is bound SQLITE_STATIC, valid until the bindings
            // are cleared in `Writer::insert`, before `rows` and `made` can go.
            let rc = unsafe {
                match c {
                    Col::Text(Some(v)) => {
                        let len = c_int::try_from(v.len()).map_err(|_| ffi::SQLITE_TOOBIG)?;
                        ffi::sqlite3_bind_text(
                            stmt,
                            i,
                            v.as_ptr().cast(),
                            len,
                            ffi::SQLITE_STATIC(),
                        )
                    }
                    Col::Int(Some(v)) => ffi::sqlite3_bind_int64(stmt, i, v),
                    Col::Real(Some(v)) => ffi::sqlite3_bind_double(stmt, i, v),
                    Col::Text(None) | Col::Int(None) | Col::Real(None) => ffi::SQLITE_OK,
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
        }
    }
    Ok(())
}

/// The connection's error for a failed call that returned `rc`.
fn failure(conn: &rusqlite::Connection, rc: c_int) -> rusqlite::Error {
    // SAFETY: the handle is the open connection's; the message is copied before any other
    // call on it.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(conn.handle());
        (!m.is_null()).then(|| std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

fn too_long() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    /// A migrated store's file (the store kept open beside the writer, as in the gateway) and
    /// a writer on it with statements of up to 16 rows.
    async fn writer_on_a_fresh_store() -> (tempfile::TempDir, crate::Store, Writer) {
        let (dir, file, store) = crate::trace_db::tests::migrated_file().await;
        let writer = Writer::new(rusqlite::Connection::open(&file).unwrap(), 16).unwrap();
        (dir, store, writer)
    }

    /// Every column of rows inserted through the writer reads back as the value the record
    /// gave it, whichever statement size carried the row, and a NULL left unbound after a
    /// statement's earlier use bound a value there stays NULL.
    #[tokio::test]
    async fn every_column_reads_back_as_bound() {
        let (_dir, _store, writer) = writer_on_a_fresh_store().await;
        let full = |i: usize| TraceRecord {
            id: format!("id-{i}"),
            client_request_id: Some(format!("client-{i}")),
            time_unix_ms: 1_790_000_000_000 + i as u64,
            project: format!("project-{i}"),
            key_id: Some(format!("key-{i}")),
            endpoint: "chat",
            requested_model: Some(format!("route::r{i} ünïcode")),
            layer: Some("route"),
            route: Some(format!("r{i}")),
            route_version: Some(i as u64),
            assigned_variant: Some(format!("a{i}")),
            serving_variant: Some(format!("s{i}")),
            sticky_source: Some("user"),
            status: 200 + i as u16,
            error_code: Some("upstream"),
            latency_ms: 1.5 * i as f64,
            ttft_ms: Some(0.25 * i as f64),
            usage: serde_json::from_str(&format!(
                r#"{{"prompt_tokens":{i},"completion_tokens":{},"total_tokens":{}}}"#,
                i + 1,
                2 * i + 1
            ))
            .ok(),
            cost_usd: Some(0.001 * i as f64),
            stream: i.is_multiple_of(2),
            user_id: Some(format!("user-{i}")),
            session_id: Some(format!("session-{i}")),
            traceparent: Some(format!("00-{:032x}-00f067aa0ba902b7-01", i + 1)),
            params: Some(Box::new(serde_json::json!({"variant": {"temperature": i}}))),
            ..Default::default()
        };
        let sparse = |i: usize| TraceRecord {
            id: format!("id-{i}"),
            project: "p".into(),
            endpoint: "embeddings",
            ..Default::default()
        };
        // A full row first, then sparse rows through the same statements: nothing bound
        // before may leak into a NULL column.
        let rows: Vec<TraceRecord> = (0..21usize)
            .map(|i| {
                if i.is_multiple_of(2) {
                    full(i)
                } else {
                    sparse(i)
                }
            })
            .collect();
        let mut at = 0;
        for n in [16, 4, 1] {
            writer.insert(&rows[at..at + n]).unwrap();
            at += n;
        }
        writer.insert(&[sparse(21)]).unwrap();
        let mut read = writer
            .conn
            .prepare(&format!(
                "SELECT {} FROM traces ORDER BY rowid",
                crate::traces::COLUMNS
            ))
            .unwrap();
        let stored: Vec<Vec<Value>> = read
            .query_map([], |r| {
                (0..crate::traces::COLUMNS.split(", ").count())
                    .map(|c| r.get::<_, Value>(c))
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected: Vec<TraceRecord> = rows;
        expected.push(sparse(21));
        assert_eq!(stored.len(), expected.len());
        for (r, got) in expected.iter().zip(&stored) {
            let made = Made::of(r);
            let want: Vec<Value> = columns(r, &made)
                .into_iter()
                .map(|c| match c {
                    Col::Text(v) => v.map_or(Value::Null, |s| Value::Text(s.into())),
                    Col::Int(v) => v.map_or(Value::Null, Value::Integer),
                    Col::Real(v) => v.map_or(Value::Null, Value::Real),
                })
                .collect();
            assert_eq!(got, &want, "row {}", r.id);
        }
    }

    /// A slice of a size no statement was prepared for is refused, not half-bound.
    #[tokio::test]
    async fn a_slice_of_an_unprepared_size_is_refused() {
        let (_dir, _store, writer) = writer_on_a_fresh_store().await;
        let rows: Vec<TraceRecord> = (0..3)
            .map(|i| TraceRecord {
                id: format!("{i}"),
                project: "p".into(),
                endpoint: "chat",
                ..Default::default()
            })
            .collect();
        assert!(writer.insert(&rows).is_err());
    }
}

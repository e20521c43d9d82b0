//! The trace writer's own SQLite connection, on threads of its own.
//!
//! Storing traces is the one write that runs all the time under load (a row per request), so
//! on SQLite it skips sqlx: through sqlx's `Any` driver a row cost about 28k instructions of
//! argument conversion, owned copies, futures and a hand-off to sqlx's worker thread per
//! statement, on top of SQLite's own ~16k (BENCHMARKS.md). Here a batch is moved to a writer
//! thread, bound straight from the records into prepared multi-row INSERTs (`trace_insert`:
//! texts read in place, not copied), and written in one transaction; the batch goes back to
//! the caller with the outcome. Checkpoints run on a thread of their own (`Checkpointer`).
//!
//! **Writing traces never slows a request.** A batch is written by a thread on Linux's idle
//! scheduling policy (`SCHED_IDLE`): any request-serving thread that becomes runnable takes
//! the CPU from it at once, so on a busy core requests never wait behind a batch (measured at
//! c=1 on one core, database on tmpfs: p99 ~0.6 ms with a normal-priority writer, ~0.25 ms
//! with this, as with traces off; on a disk the writes' I/O adds more wherever they run). An idle-policy thread gets almost no CPU while the core is saturated, so a batch
//! not written within [`HURRY_AFTER`] is handed to a second writer thread of normal
//! priority (at a statement boundary, in the same transaction), and so are the batches of the
//! next [`SATURATED_FOR`]: under full load traces keep their fair share of the CPU and the
//! queue does not overflow.
//!
//! Everything else (catalog, queries, retention) keeps the sqlx pool. Both open the same file
//! in WAL mode: readers never wait for this writer, and the rare catalog write waits for a
//! batch's transaction (`busy_timeout`).

use crate::StoreError;
use crate::trace_insert::Writer;
use crate::traces::slices;
use signalbox_core::trace::TraceRecord;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

type Reply = (Vec<TraceRecord>, Result<(), StoreError>);

/// How long a batch may wait for the idle-policy writer before the normal one takes over.
const HURRY_AFTER: Duration = Duration::from_millis(50);
/// After a batch was handed over, how long batches go straight to the normal-priority writer
/// (the core is saturated; the idle-policy writer is tried again after this).
const SATURATED_FOR: Duration = Duration::from_secs(2);
/// How often the checkpointer copies committed trace pages from the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

struct Job {
    batch: Vec<TraceRecord>,
    /// Rows already inserted in the open transaction (a job handed over half-way).
    from: usize,
    done: oneshot::Sender<Reply>,
}

struct Shared {
    conn: Mutex<Writer>,
    /// Set when the current batch waited too long: the idle-policy writer hands it over.
    hurry: AtomicBool,
    /// The idle-policy writer handed the current batch over (it was starved of CPU, not
    /// merely waiting for the disk, which a hurry during a commit's sync would be).
    handed_over: AtomicBool,
    /// A batch committed since the last checkpoint.
    committed: AtomicBool,
}

/// Hands batches to the writer threads; they end when this is dropped.
pub(crate) struct TraceDb {
    /// The idle-policy writer (the usual one).
    idle: mpsc::Sender<Job>,
    /// The normal-priority writer: batches handed over, and the one after a hand-over.
    busy: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    /// Until when batches go to `busy`: a batch was handed over, the core is saturated.
    saturated_until: Mutex<Option<std::time::Instant>>,
    /// One batch at a time: a batch handed over half-way leaves its transaction open on the
    /// connection, and no other batch may begin (or roll back) on it meanwhile.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Dropped with this: the checkpointer's last checkpoint, then it ends.
    _checkpointer: mpsc::Sender<()>,
}

impl TraceDb {
    /// Open the connection and start the threads. `path` is the database file the sqlx pool
    /// has just opened and migrated.
    pub(crate) fn open(path: &Path) -> Result<TraceDb, StoreError> {
        // WAL is the file's mode already (set by the pool). A batch commits without waiting
        // for the disk: a crash of the process loses nothing, a power cut may lose the last
        // batches, never corrupt the file (catalog writes, on the pool, keep FULL). This
        // connection only ever inserts traces, so its statement journal stays in memory, and
        // 512 KiB of page cache holds what appending touches (the right edges of the table's
        // b-trees and the pages of a 512-row batch; 2 MiB measured the same instructions a row
        // and ~2 MB more RSS).
        //
        // It never checkpoints: a checkpoint syncs the disk, which on a slow disk took up to
        // 2.7 s while a batch's commit waited on it, the queue filled and records were
        // dropped (~1% at c=64). The checkpointer thread does it beside the writers.
        let conn = connect(
            path,
            "PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -512; \
             PRAGMA wal_autocheckpoint = 0;",
        )?;
        // Prepare once here, so a schema problem fails the store's opening, not each batch.
        let writer = Writer::new(conn, STATEMENT_ROWS)?;
        let shared = Arc::new(Shared {
            conn: Mutex::new(writer),
            hurry: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            committed: AtomicBool::new(false),
        });
        let (checkpointer, stop) = mpsc::channel::<()>();
        let checkpoints = Checkpointer::open(path, shared.clone(), stop)?;
        std::thread::Builder::new()
            .name("sb-checkpoint".into())
            .spawn(move || checkpoints.run())
            .map_err(|e| StoreError::Io("cannot start the checkpoint thread".into(), e))?;
        let (busy, busy_rx) = mpsc::channel::<Job>();
        let (idle, idle_rx) = mpsc::channel::<Job>();
        let spawn = |name: &str, rx: mpsc::Receiver<Job>, hand_over: Option<mpsc::Sender<Job>>| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || lane(&shared, &rx, hand_over.as_ref()))
                .map_err(|e| StoreError::Io("cannot start a trace writer thread".into(), e))
        };
        spawn("sb-traces", busy_rx, None)?;
        spawn("sb-traces-idle", idle_rx, Some(busy.clone()))?;
        Ok(TraceDb {
            idle,
            busy,
            shared,
            saturated_until: Mutex::new(None),
            one_at_a_time: tokio::sync::Mutex::new(()),
            _checkpointer: checkpointer,
        })
    }

    /// Write a batch on a writer thread. `Err` gives the batch back unwritten when the threads
    /// are gone (the caller then writes it another way); a thread that died holding it
    /// answers with an empty batch and an error (the writer counts the records as dropped).
    pub(crate) async fn write(&self, batch: Vec<TraceRecord>) -> Result<Reply, Vec<TraceRecord>> {
        let _one = self.one_at_a_time.lock().await;
        let (done, mut reply) = oneshot::channel();
        let job = Job {
            batch,
            from: 0,
            done,
        };
        let saturated = {
            let mut until = self
                .saturated_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            until.take_if(|t| *t <= std::time::Instant::now());
            until.is_some()
        };
        let lane = if saturated { &self.busy } else { &self.idle };
        if let Err(mpsc::SendError(job)) = lane.send(job) {
            return Err(job.batch);
        }
        // The threads answer every job they take (a panic included).
        let r = match tokio::time::timeout(HURRY_AFTER, &mut reply).await {
            Ok(r) => r,
            Err(_) => {
                self.shared.hurry.store(true, Ordering::Relaxed);
                reply.await
            }
        };
        self.shared.hurry.store(false, Ordering::Relaxed);
        let hurried = self.shared.handed_over.swap(false, Ordering::Relaxed);
        if hurried && !saturated {
            *self
                .saturated_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now() + SATURATED_FOR);
        }
        Ok(r.unwrap_or_else(|_| {
            let gone = "trace writer thread stopped; the batch went with it";
            (Vec::new(), Err(StoreError::Invalid(gone.into())))
        }))
    }
}

/// A writer thread: takes jobs and writes them. The idle-policy one (`hand_over` set) puts
/// itself on `SCHED_IDLE` and hands a job it is told to hurry to the normal one.
fn lane(shared: &Shared, jobs: &mpsc::Receiver<Job>, hand_over: Option<&mpsc::Sender<Job>>) {
    if hand_over.is_some() {
        idle_policy();
    }
    while let Ok(mut job) = jobs.recv() {
        let hurry = hand_over.map(|_| &shared.hurry);
        if job.from == 0 {
            // In index order: requests finish out of the order they started in, and a row
            // that lands after the last one inserted takes SQLite's append path in both
            // indexes instead of a search from their root.
            job.batch
                .sort_unstable_by(|a, b| (a.time_unix_ms, &a.id).cmp(&(b.time_unix_ms, &b.id)));
        }
        // A panic (none is known) fails this batch, not the thread: the batch goes back for
        // the caller's retry.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let conn = shared.conn.lock().unwrap_or_else(|p| p.into_inner());
            write(&conn, &job.batch, job.from, hurry)
        }))
        .unwrap_or_else(|_| {
            roll_back(shared);
            Err(StoreError::Invalid("trace writer panicked".into()))
        });
        match (outcome, hand_over) {
            (Ok(Some(at)), Some(busy)) => {
                shared.handed_over.store(true, Ordering::Relaxed);
                job.from = at;
                if let Err(mpsc::SendError(job)) = busy.send(job) {
                    roll_back(shared);
                    let gone = StoreError::Invalid("trace writer stopped".into());
                    let _ = job.done.send((job.batch, Err(gone)));
                }
            }
            (Ok(_), _) => {
                shared.committed.store(true, Ordering::Relaxed);
                let _ = job.done.send((job.batch, Ok(())));
            }
            (Err(e), _) => {
                let _ = job.done.send((job.batch, Err(e)));
            }
        }
    }
}

/// Copies committed pages from the WAL into the database file ("checkpoint") on a thread of
/// its own, every [`CHECKPOINT_EVERY`] after a batch committed, and once more when the store
/// closes. `PASSIVE`: it never waits for, nor holds up, a writer; what a batch appends meanwhile
/// is the next checkpoint's. The WAL starts over from its beginning once a checkpoint has
/// copied all of it.
struct Checkpointer {
    conn: rusqlite::Connection,
    shared: Arc<Shared>,
    stop: mpsc::Receiver<()>,
}

impl Checkpointer {
    fn open(
        path: &Path,
        shared: Arc<Shared>,
        stop: mpsc::Receiver<()>,
    ) -> Result<Checkpointer, StoreError> {
        // The same durability as the commits it copies (the checkpoint syncs the database
        // file and the WAL before it); it reads pages straight from the WAL, so no cache.
        let conn = connect(
            path,
            "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -64; PRAGMA wal_autocheckpoint = 0;",
        )?;
        Ok(Checkpointer { conn, shared, stop })
    }

    fn run(self) {
        loop {
            let last = match self.stop.recv_timeout(CHECKPOINT_EVERY) {
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            if (self.shared.committed.swap(false, Ordering::Relaxed) || last)
                && let Err(e) = self.checkpoint()
            {
                tracing::warn!("trace checkpoint failed (the next one retries): {e}");
                self.shared.committed.store(true, Ordering::Relaxed);
            }
            if last {
                return;
            }
        }
    }

    fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }
}

/// A connection of the trace threads to the store's file (multi-thread mode: one thread at a
/// time, each behind its owner), waiting up to 5 s for a lock, with `pragmas` applied.
fn connect(path: &Path, pragmas: &str) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(pragmas)?;
    Ok(conn)
}

/// End a batch's transaction left open by a writer that did not finish it, so the next batch
/// can begin.
fn roll_back(shared: &Shared) {
    let conn = &shared.conn.lock().unwrap_or_else(|p| p.into_inner()).conn;
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

#[cfg(target_os = "linux")]
fn idle_policy() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        idle,
    ) {
        tracing::debug!("trace writer keeps normal priority: {e:?}");
    }
}

#[cfg(not(target_os = "linux"))]
fn idle_policy() {}

/// Rows an INSERT statement of this writer holds at most: a statement keeps its b-tree
/// cursors between its rows (a statement a row descends every index from its root again, half
/// as costly again in SQLite's own instructions), and one of 16 rows takes ~0.1 ms.
const STATEMENT_ROWS: usize = 16;

/// Insert `batch[from..]` in one transaction (begun when `from` is 0, committed at the end),
/// in multi-row statements; a batch that fails rolls back whole, so a retried batch never
/// stores a row twice. When `hurry` is given and set, stops at a statement boundary with the
/// transaction open and returns the rows done (`Some`), for another thread to go on with.
///
/// No yielding between statements: on the idle-policy writer it is not needed, and on the
/// normal one it cost the writer its fair share of a saturated core (a 512-row batch took
/// 50 ms instead of ~15) and overflowed the queue.
fn write(
    writer: &Writer,
    batch: &[TraceRecord],
    from: usize,
    hurry: Option<&AtomicBool>,
) -> Result<Option<usize>, StoreError> {
    let conn = &writer.conn;
    if from == 0 {
        // Never begin over (nor, failing, roll back) a batch handed over half-way.
        if !conn.is_autocommit() {
            return Err(StoreError::Invalid(
                "another trace batch is half-written on this connection".into(),
            ));
        }
        conn.execute_batch("BEGIN")?;
    }
    let inserted = insert(writer, batch, from, hurry);
    match inserted {
        Ok(Some(at)) => Ok(Some(at)),
        Ok(None) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(None),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

fn insert(
    writer: &Writer,
    batch: &[TraceRecord],
    from: usize,
    hurry: Option<&AtomicBool>,
) -> rusqlite::Result<Option<usize>> {
    let mut at = from;
    for slice in slices(&batch[from.min(batch.len())..], STATEMENT_ROWS) {
        if at > from && hurry.is_some_and(|h| h.load(Ordering::Relaxed)) {
            return Ok(Some(at));
        }
        writer.insert(slice)?;
        at += slice.len();
    }
    Ok(None)
}

/// The database file of a `sqlite:` store URL, as sqlx reads it (`sqlite://PATH` or
/// `sqlite:PATH`, options after `?`); `None` for an in-memory database or a path this does
/// not read the same way (percent-escapes), which keep writing traces through sqlx.
pub(crate) fn file_of(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
    let plain_options = options
        .split('&')
        .all(|o| o.is_empty() || o == "mode=rwc" || o == "mode=rw");
    (!path.is_empty() && !path.contains(':') && !path.contains('%') && plain_options)
        .then(|| PathBuf::from(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh store's SQLite file, migrated (the store is kept open beside the test's own
    /// connections, as in the gateway).
    pub(crate) async fn migrated_file() -> (tempfile::TempDir, PathBuf, crate::Store) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let url = format!("sqlite://{}", file.display());
        let store = crate::Store::open(&url, crate::MasterKey::generate())
            .await
            .unwrap();
        (dir, file, store)
    }

    fn writer_on(file: &Path) -> Writer {
        Writer::new(rusqlite::Connection::open(file).unwrap(), STATEMENT_ROWS).unwrap()
    }

    fn rec(id: String) -> TraceRecord {
        TraceRecord {
            id,
            project: "default".into(),
            endpoint: "chat",
            status: 200,
            ..Default::default()
        }
    }

    /// What the hand-over between the writer threads rests on: a batch stopped at a statement
    /// boundary keeps its transaction open, goes on from where it stopped on the same
    /// connection, and commits each row once; a failed batch leaves nothing behind.
    #[tokio::test]
    async fn a_batch_stopped_half_way_goes_on_in_the_same_transaction() {
        let (_dir, file, store) = migrated_file().await;
        let writer = writer_on(&file);
        let conn = &writer.conn;
        let count = || {
            rusqlite::Connection::open(&file)
                .unwrap()
                .query_row("SELECT COUNT(*) FROM traces", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let batch: Vec<TraceRecord> = (0..40).map(|i| rec(format!("h{i}"))).collect();
        let hurry = AtomicBool::new(true);
        // Told to hurry, the first statement (16 rows) is written and the batch stops.
        assert_eq!(write(&writer, &batch, 0, Some(&hurry)).unwrap(), Some(16));
        assert_eq!(count(), 0, "nothing is visible before the commit");
        // Meanwhile no other batch begins on the connection, nor rolls the open one back.
        let other: Vec<TraceRecord> = (0..3).map(|i| rec(format!("o{i}"))).collect();
        assert!(write(&writer, &other, 0, None).is_err());
        assert_eq!(write(&writer, &batch, 16, None).unwrap(), None);
        assert_eq!(count(), 40);
        // A batch failing in its second statement rolls back whole: the first statement and
        // the rows the failing one wrote before (`OR FAIL` keeps them) included.
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON traces WHEN NEW.id = 'b18' \
             BEGIN SELECT RAISE(FAIL, 'refused'); END;",
        )
        .unwrap();
        let bad: Vec<TraceRecord> = (0..20).map(|i| rec(format!("b{i}"))).collect();
        assert!(write(&writer, &bad, 0, None).is_err());
        assert_eq!(count(), 40);
        assert!(conn.is_autocommit(), "no transaction left open");
        assert_eq!(write(&writer, &bad[..18], 0, None).unwrap(), None);
        assert_eq!(count(), 58);
        drop(store);
    }

    /// A batch the idle-policy writer cannot get to in time (here: the connection held
    /// elsewhere) is handed to the normal writer, written whole and once, and the next batches
    /// go to the normal writer straight away.
    #[tokio::test]
    async fn a_batch_kept_waiting_is_handed_over_and_written_once() {
        let (_dir, file, _store) = migrated_file().await;
        let db = TraceDb::open(&file).unwrap();
        let batch: Vec<TraceRecord> = (0..40).map(|i| rec(format!("w{i}"))).collect();
        let shared = db.shared.clone();
        let (locked, is_locked) = mpsc::channel();
        let holder = std::thread::spawn(move || {
            let _held = shared.conn.lock().unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(HURRY_AFTER * 2);
        });
        is_locked.recv().unwrap();
        let (back, written) = db
            .write(batch)
            .await
            .unwrap_or_else(|_| panic!("writer threads gone"));
        holder.join().unwrap();
        written.unwrap();
        assert_eq!(back.len(), 40, "the batch comes back whole");
        let n: i64 = rusqlite::Connection::open(&file)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM traces", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 40);
        assert!(
            db.saturated_until.lock().unwrap().is_some(),
            "next batches go to the normal writer"
        );
    }

    /// A batch a writer left half-written (it panicked, or the other writer was gone) is
    /// rolled back, and the next batch can begin.
    #[tokio::test]
    async fn a_batch_left_half_written_is_rolled_back_for_the_next() {
        let (_dir, file, _store) = migrated_file().await;
        let shared = Shared {
            conn: Mutex::new(writer_on(&file)),
            hurry: AtomicBool::new(true),
            handed_over: AtomicBool::new(false),
            committed: AtomicBool::new(false),
        };
        let batch: Vec<TraceRecord> = (0..40).map(|i| rec(format!("p{i}"))).collect();
        {
            let writer = shared.conn.lock().unwrap();
            assert_eq!(
                write(&writer, &batch, 0, Some(&shared.hurry)).unwrap(),
                Some(16)
            );
        }
        roll_back(&shared);
        let writer = shared.conn.lock().unwrap();
        assert_eq!(write(&writer, &batch[..3], 0, None).unwrap(), None);
        let n: i64 = writer
            .conn
            .query_row("SELECT COUNT(*) FROM traces", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n, 3,
            "the half-written rows are gone, the next batch stored"
        );
    }

    /// The writers never checkpoint (a checkpoint's disk sync held batches up for seconds);
    /// what they commit reaches the database file shortly after, through the checkpointer.
    #[tokio::test]
    async fn committed_traces_reach_the_database_file_without_the_writers_checkpointing() {
        let (_dir, file, _store) = migrated_file().await;
        let db = TraceDb::open(&file).unwrap();
        let auto: i64 = db
            .shared
            .conn
            .lock()
            .unwrap()
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0, "the writers' commits never checkpoint");
        let size = || std::fs::metadata(&file).unwrap().len();
        let before = size();
        for b in 0..3 {
            let batch: Vec<TraceRecord> = (0..500).map(|i| rec(format!("c{b}-{i}"))).collect();
            let (_, written) = db
                .write(batch)
                .await
                .unwrap_or_else(|_| panic!("writer threads gone"));
            written.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < before + 100_000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
        }
        assert!(
            size() >= before + 100_000,
            "the database file grew from {before} to only {} bytes",
            size()
        );
    }

    #[test]
    fn the_trace_writer_opens_the_file_sqlx_opens() {
        use std::path::PathBuf;
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            file_of("sqlite:///var/lib/sb/signalbox.db"),
            p("/var/lib/sb/signalbox.db")
        );
        assert_eq!(
            file_of("sqlite://data/signalbox.db?mode=rwc"),
            p("data/signalbox.db")
        );
        assert_eq!(file_of("sqlite:data.db"), p("data.db"));
        assert_eq!(file_of("sqlite::memory:"), None);
        assert_eq!(file_of("sqlite://a%20b.db"), None);
        assert_eq!(file_of("sqlite://x.db?mode=ro"), None);
        assert_eq!(file_of("postgres://h/db"), None);
    }
}

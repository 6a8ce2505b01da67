//! On SQLite: whether the ledger holds a settlement row for a replay key, asked on the calling
//! thread instead of through the pool.
//!
//! Why this exists beside sqlx: sqlx runs every SQLite statement on its connection's worker
//! thread, so each statement costs two thread hand-offs (a channel send that wakes the worker,
//! a reply that wakes the task). Measured with `cargo bench --bench ledger`: 83 µs of CPU per
//! lookup of an unknown payment at one task and 38 µs at 16, where the indexed read itself is a
//! few µs; over HTTP, `/verify` lost 100–150 µs per request to it. A `/verify` of a new payment
//! asks exactly this question and the answer is nearly always "no row", so that answer comes
//! from here. Whatever else happens (a row is there, the file cannot be opened, SQLite is busy)
//! the caller goes through the pool as before: this path can only say "absent", and only from a
//! committed snapshot of the same file, the answer the pool would have given at that moment.
//!
//! Each thread keeps its own read-only connection per ledger (the runtime's few workers), with
//! no busy wait: a busy database is answered by the pool, never by blocking a runtime thread.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// Connections one thread keeps, across ledgers (tests open many; a server opens one).
const PER_THREAD: usize = 4;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static READERS: RefCell<Vec<(u64, Connection)>> = const { RefCell::new(Vec::new()) };
}

/// A SQLite ledger file, read on the calling thread.
#[derive(Debug)]
pub(super) struct Presence {
    id: u64,
    path: PathBuf,
}

impl Presence {
    /// For the file at `path`; `None` for anything but a plain file (an in-memory database is
    /// only reachable through its own connections).
    pub(super) fn new(path: PathBuf) -> Option<Self> {
        path.is_file().then(|| Presence {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path,
        })
    }

    /// `Some(false)` when no settlement row has `replay_key`, `Some(true)` when one has, `None`
    /// when this thread could not tell (the caller asks the pool).
    pub(super) fn settlement_exists(&self, replay_key: &str) -> Option<bool> {
        self.with_reader(|conn| {
            conn.prepare_cached("SELECT 1 FROM settlements WHERE replay_key = ?1")?
                .query_row([replay_key], |_| Ok(()))
                .optional()
                .map(|row| row.is_some())
        })
    }

    fn with_reader<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        READERS
            .try_with(|readers| {
                let mut readers = readers.try_borrow_mut().ok()?;
                let at = match readers.iter().position(|(id, _)| *id == self.id) {
                    Some(at) => at,
                    None => {
                        let conn = self.open().ok()?;
                        if readers.len() >= PER_THREAD {
                            readers.remove(0);
                        }
                        readers.push((self.id, conn));
                        readers.len() - 1
                    }
                };
                match read(&readers[at].1) {
                    Ok(answer) => Some(answer),
                    Err(_) => {
                        // A broken connection is opened again next time.
                        readers.remove(at);
                        None
                    }
                }
            })
            .ok()
            .flatten()
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never wait for a lock on a runtime thread (rusqlite's default waits 5 s).
        conn.busy_timeout(std::time::Duration::ZERO)?;
        // A point lookup reads a handful of pages; the OS keeps the file's pages anyway.
        conn.execute_batch("PRAGMA cache_size = -256; PRAGMA query_only = ON;")?;
        Ok(conn)
    }
}

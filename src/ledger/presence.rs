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
//! The same file: the path is the one SQLite reports for the pool's own connection
//! (`pragma_database_list`), never re-derived from the URL (sqlx normalises a URL's `..` before
//! the kernel follows symlinks, so the two readings can name different files), and a URL that
//! selects a memory database, another VFS or `immutable` turns this path off.
//!
//! Each thread keeps its own read-only connection per ledger (the runtime's few workers) with
//! no busy timeout: a lock is answered by the pool, not waited for. (SQLite may still retry
//! briefly inside a WAL read while a checkpoint rewrites the WAL index; that is rare and short.)
//! A file that keeps failing turns this path off for the ledger's lifetime, with one warning.
//! A thread's connections for a dropped ledger stay open until that thread needs the slot
//! ([`PER_THREAD`] bounds them); a server opens one ledger, so nothing accumulates.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sqlx::AnyPool;

/// Connections one thread keeps, across ledgers (tests open many; a server opens one).
const PER_THREAD: usize = 4;

/// Lookups in a row, on any thread, that this path could not answer before it turns itself off.
const FAILURES_BEFORE_OFF: u32 = 64;

/// URL parameters under which another connection to the "same" path may not see this
/// database: `mode=memory`, a different VFS, or a file declared unchanging.
const UNSHAREABLE: &[(&str, Option<&str>)] =
    &[("mode", Some("memory")), ("vfs", None), ("immutable", None)];

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static READERS: RefCell<Vec<(u64, Connection)>> = const { RefCell::new(Vec::new()) };
}

/// A SQLite ledger file, read on the calling thread.
#[derive(Debug)]
pub(super) struct Presence {
    id: u64,
    path: PathBuf,
    failures: AtomicU32,
    off: AtomicBool,
    answered: AtomicU64,
}

impl Presence {
    /// For the file the pool's connections have open; `None` when there is no such plain file
    /// (a memory database is only reachable through its own connections) or the URL makes it
    /// unsafe to open it a second way.
    pub(super) async fn for_pool(pool: &AnyPool, url: &str) -> Option<Self> {
        if url_is_unshareable(url) {
            return None;
        }
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(pool)
                .await
                .ok()?;
        let path = PathBuf::from(file);
        path.is_file().then(|| Presence {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path,
            failures: AtomicU32::new(0),
            off: AtomicBool::new(false),
            answered: AtomicU64::new(0),
        })
    }

    /// `Some(false)` when no settlement row has `replay_key`, `Some(true)` when one has, `None`
    /// when this thread could not tell (the caller asks the pool).
    pub(super) fn settlement_exists(&self, replay_key: &str) -> Option<bool> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        let answer = self.with_reader(|conn| {
            conn.prepare_cached("SELECT 1 FROM settlements WHERE replay_key = ?1")?
                .query_row([replay_key], |_| Ok(()))
                .optional()
                .map(|row| row.is_some())
        });
        match answer {
            Some(exists) => {
                // Read before writing: the counter's cache line stays shared while all is well.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if !exists {
                    self.answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failed >= FAILURES_BEFORE_OFF && !self.off.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        failures = failed,
                        "the SQLite ledger file cannot be read beside the pool; every replay \
                         lookup now goes through the pool (slower, equally correct)"
                    );
                }
            }
        }
        answer
    }

    /// How many lookups this path has answered "absent" (tests use it to prove the path runs).
    pub(super) fn answered_absent(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
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

fn url_is_unshareable(url: &str) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        UNSHAREABLE.iter().any(|(k, v)| {
            key.eq_ignore_ascii_case(k) && v.is_none_or(|v| value.eq_ignore_ascii_case(v))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::url_is_unshareable;

    #[test]
    fn urls_that_name_a_private_or_unchanging_database_are_refused() {
        for url in [
            "sqlite://x.db?mode=memory",
            "sqlite://x.db?cache=shared&mode=memory",
            "sqlite://x.db?vfs=unix-none",
            "sqlite://x.db?immutable=1",
            "sqlite://x.db?mode=rwc&IMMUTABLE=true",
        ] {
            assert!(url_is_unshareable(url), "{url}");
        }
        for url in [
            "sqlite://x.db",
            "sqlite://x.db?mode=rwc",
            "sqlite://x.db?mode=ro",
        ] {
            assert!(!url_is_unshareable(url), "{url}");
        }
    }
}

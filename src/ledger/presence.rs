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
//! The same file, and one SQLite can share: the path is the one SQLite reports for the pool's
//! own connection (`pragma_database_list`), never re-derived from the URL (sqlx normalises a
//! URL's `..` before the kernel follows symlinks, so the two readings can name different
//! files); the pool must be in WAL mode (what makes a second connection's read see every commit;
//! a memory database, a VFS without shared memory or `nolock` leave it in another mode); a URL
//! naming a VFS, `immutable`, `nolock` or memory, a `file:` URI or a control character turns
//! this path off; a reader is only opened on the very file (device and inode) the pool had open
//! when the ledger connected, and an "absent" only counts while the path still names that file
//! (one `stat` per answer, after the read). A file replaced under a running ledger (a restore by
//! `mv`) turns this path off for good, with a warning: sqlx recycles its connections (after 10
//! minutes idle, 30 at most), so the pool itself drifts onto the new file and a reader opened
//! before the replacement would otherwise answer from the old one. Only a restart puts a ledger
//! whose file was replaced under it right; that was so before this path existed. Not covered:
//! a replacement in the milliseconds between the pool's first connection and the `stat` at
//! connect (the identity recorded would be the new file's), and a path swapped away and back
//! again through a hard link; both need an operator moving files under a starting process.
//!
//! Each thread keeps its own read-only connection per ledger (the runtime's few workers) with
//! no busy timeout: a lock is answered by the pool, not waited for. Not quite never blocking:
//! SQLite itself retries the start of a WAL read with short sleeps while another connection is
//! rewriting the WAL index (up to seconds in pathological cases, microseconds in practice on a
//! local disk), and a read after a commit reads the changed pages from the file. Lookups that
//! keep failing turn this path off for a minute at a time, with a warning each time (on a clock
//! that never steps back).
//! A thread's connections for a dropped ledger stay open until that thread needs the slot
//! ([`PER_THREAD`] bounds them); a server opens one ledger, so nothing accumulates.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sqlx::AnyPool;

/// Connections one thread keeps, across ledgers (tests open many; a server opens one).
const PER_THREAD: usize = 4;

/// Lookups in a row, on any thread, that this path could not answer before it turns itself off.
const FAILURES_BEFORE_OFF: u32 = 64;

/// How long it stays off before trying again.
const OFF_FOR: Duration = Duration::from_secs(60);

/// URL parameters (decoded as sqlx decodes them) under which another connection to the "same"
/// path may not see this database: memory, another VFS, no locking, or a file declared
/// unchanging.
const UNSHAREABLE: &[(&str, Option<&str>)] = &[
    ("mode", Some("memory")),
    ("vfs", None),
    ("immutable", None),
    ("nolock", None),
];

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static READERS: RefCell<Vec<(u64, Connection)>> = const { RefCell::new(Vec::new()) };
}

/// `off_until` for a path that must never be used again (its file was replaced).
const OFF_FOR_GOOD: i64 = i64::MAX;

/// Milliseconds on a clock that never steps back, from 1 (0 means "on" in `off_until`).
fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    i64::try_from(start.elapsed().as_millis())
        .unwrap_or(i64::MAX)
        .saturating_add(1)
        .min(OFF_FOR_GOOD - 1)
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

fn file_id(path: &Path) -> std::io::Result<FileId> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// Why a lookup could not be answered here (logged when the path turns off).
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The path no longer names the file the pool has open.
    #[error(
        "the ledger's path names another file than the one the pool has open \
         (replaced while running: restart the facilitator)"
    )]
    Replaced,
    /// This thread's connections are being torn down or already borrowed.
    #[error("thread-local readers unavailable")]
    Thread,
}

/// A SQLite ledger file, read on the calling thread.
#[derive(Debug)]
pub(super) struct Presence {
    id: u64,
    path: PathBuf,
    /// The file the pool had open when the ledger connected; readers open only it.
    file: FileId,
    failures: AtomicU32,
    /// [`monotonic_ms`] until which this path is off; 0 while on, [`OFF_FOR_GOOD`] for good.
    off_until: AtomicI64,
    answered: AtomicU64,
}

impl Presence {
    /// For the file the pool's connections have open; `None` when there is no such plain file
    /// (a memory database is only reachable through its own connections), the pool is not in
    /// WAL mode, or the URL makes it unsafe to open the file a second way.
    pub(super) async fn for_pool(pool: &AnyPool, url: &str) -> Option<Self> {
        if url_is_unshareable(url) {
            return None;
        }
        let (file, journal): (String, String) = sqlx::query_as(
            "SELECT d.file, j.journal_mode FROM pragma_database_list AS d, \
             pragma_journal_mode AS j WHERE d.name = 'main'",
        )
        .fetch_one(pool)
        .await
        .ok()?;
        if !journal.eq_ignore_ascii_case("wal") {
            return None;
        }
        let path = PathBuf::from(file);
        if !path.is_file() {
            return None;
        }
        Some(Presence {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            file: file_id(&path).ok()?,
            path,
            failures: AtomicU32::new(0),
            off_until: AtomicI64::new(0),
            answered: AtomicU64::new(0),
        })
    }

    /// `Some(false)` when no settlement row has `replay_key`, `Some(true)` when one has, `None`
    /// when this thread could not tell (the caller asks the pool).
    pub(super) fn settlement_exists(&self, replay_key: &str) -> Option<bool> {
        let off_until = self.off_until.load(Ordering::Relaxed);
        if off_until != 0 {
            if monotonic_ms() < off_until {
                return None;
            }
            // Time to try again, from a clean count (one thread re-arms; the others follow).
            if self
                .off_until
                .compare_exchange(off_until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.failures.store(0, Ordering::Relaxed);
            }
        }
        let answer = self.with_reader(|conn| {
            conn.prepare_cached("SELECT 1 FROM settlements WHERE replay_key = ?1")?
                .query_row([replay_key], |_| Ok(()))
                .optional()
                .map(|row| row.is_some())
        });
        match answer {
            Ok(exists) => {
                // Read before writing: the counter's cache line stays shared while all is well.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if exists {
                    return Some(true);
                }
                // The reader may have been opened before the path was replaced (by a restore,
                // say) while the pool has since reconnected to the new file: an "absent" only
                // counts while the path still names the file the pool had (one stat, ~1 µs).
                if !file_id(&self.path).is_ok_and(|id| id == self.file) {
                    self.off_for_good();
                    return None;
                }
                self.answered.fetch_add(1, Ordering::Relaxed);
                Some(false)
            }
            Err(Unanswered::Replaced) => {
                self.off_for_good();
                None
            }
            Err(why) => {
                let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failed == FAILURES_BEFORE_OFF {
                    let until = monotonic_ms().saturating_add(OFF_FOR.as_millis() as i64);
                    // Only from "on": never over "off for good".
                    let off = self
                        .off_until
                        .compare_exchange(0, until, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok();
                    if off {
                        tracing::warn!(
                            failures = failed,
                            last_error = %why,
                            off_for_s = OFF_FOR.as_secs(),
                            "the SQLite ledger file cannot be read beside the pool; replay \
                             lookups go through the pool for a while (slower, equally correct)"
                        );
                    }
                }
                None
            }
        }
    }

    /// The path no longer names the pool's file: never again (one warning).
    fn off_for_good(&self) {
        if self.off_until.swap(OFF_FOR_GOOD, Ordering::Relaxed) != OFF_FOR_GOOD {
            tracing::warn!(
                "{}; replay lookups go through the pool from now on",
                Unanswered::Replaced
            );
        }
    }

    /// How many lookups this path has answered "absent" (tests use it to prove the path runs).
    pub(super) fn answered_absent(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn with_reader<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Unanswered> {
        READERS
            .try_with(|readers| {
                let mut readers = readers.try_borrow_mut().map_err(|_| Unanswered::Thread)?;
                let at = match readers.iter().position(|(id, _)| *id == self.id) {
                    Some(at) => at,
                    None => {
                        let conn = self.open()?;
                        if readers.len() >= PER_THREAD {
                            readers.remove(0);
                        }
                        readers.push((self.id, conn));
                        readers.len() - 1
                    }
                };
                read(&readers[at].1).map_err(|e| {
                    // A broken connection is opened again next time.
                    readers.remove(at);
                    Unanswered::Sqlite(e)
                })
            })
            .map_err(|_| Unanswered::Thread)?
    }

    /// A read-only connection to the pool's file, and only to it: the path is checked to name
    /// the pool's file before and after the open (the pool holds that file open, so its inode
    /// cannot be reused meanwhile).
    fn open(&self) -> Result<Connection, Unanswered> {
        let same = || file_id(&self.path).is_ok_and(|id| id == self.file);
        if !same() {
            return Err(Unanswered::Replaced);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        if !same() {
            return Err(Unanswered::Replaced);
        }
        // Never wait for a lock on a runtime thread (rusqlite's default waits 5 s).
        conn.busy_timeout(Duration::ZERO)?;
        // A point lookup reads a handful of pages; the OS keeps the file's pages anyway.
        conn.execute_batch("PRAGMA cache_size = -256; PRAGMA query_only = ON;")?;
        Ok(conn)
    }
}

/// Whether the URL asks for something a second connection to the file cannot share, read the
/// way sqlx reads it (percent-decoded parameters), or is a `file:` URI (whose own parameters
/// sqlx hands to SQLite unread).
fn url_is_unshareable(url: &str) -> bool {
    // `Url::parse` (which sqlx's URL reading goes through) drops tabs and line breaks, so
    // `v\tfs=` would reach SQLite as `vfs=`: a URL with control characters is not judged at all.
    if url.chars().any(|c| c.is_ascii_control()) {
        return true;
    }
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    // Decoded as sqlx decodes it (`percent_decode_str`).
    let database = percent_encoding::percent_decode_str(database).decode_utf8_lossy();
    if database.starts_with("file:") || database.contains('?') {
        return true;
    }
    url::form_urlencoded::parse(query.as_bytes()).any(|(key, value)| {
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
            "sqlite://x.db?v%66s=unix-dotfile",
            "sqlite://x.db?%69mmutable=1",
            "sqlite://x.db?nolock=1",
            "sqlite://x.db?mode=%6demory",
            "sqlite:file:/p/ledger.db",
            "sqlite:file:/p/ledger.db%3Fvfs%3Dunix-dotfile",
            "sqlite:///p/ledger.db%3Fnolock%3D1",
            "sqlite://%66ile:/p/ledger.db",
            "sqlite://x.db?v\tfs=unix-excl",
            "sqlite://x.db?immu\ntable=1",
            "sqlite://x.db?mode=mem\rory",
        ] {
            assert!(url_is_unshareable(url), "{url}");
        }
        for url in [
            "sqlite://x.db",
            "sqlite://x.db?mode=rwc",
            "sqlite://x.db?mode=ro",
            "sqlite:///var/lib/x402/ledger.db?cache=shared",
            "sqlite://a+b%20c.db",
        ] {
            assert!(!url_is_unshareable(url), "{url}");
        }
    }
}

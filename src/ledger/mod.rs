//! The settlement ledger: one row per payment, keyed by the payment's on-chain replay key, so
//! that a payment is settled at most once across requests, replicas and restarts.
//!
//! Every change is a single compare-and-set statement whose row count decides what happens next
//! (house style §5): `claim` is an insert that may conflict; later transitions name the state
//! they expect and return a [`Transition`] the caller must look at. Two backends honour one
//! contract, through one `sqlx::AnyPool` and one set of SQL statements: Postgres (production,
//! several replicas) and SQLite (the embedded default). All SQL lives in this module.
//!
//! States: `claimed` (reserved, nothing broadcast) → `submitted` (a signed transaction id is
//! recorded *before* it is broadcast) → `settled` | `failed`. A `claimed` row whose settle ends
//! without broadcasting is deleted (`release`), so the same authorization can be retried; a
//! `failed` row may be claimed again because the chain did not consume the authorization.
//!
//! Files: [`settlements`] (the payment rows, their recorded transactions, payment
//! identifiers), [`signers`] (signer leases), [`access`] (API keys), [`budgets`] (abuse budgets),
//! [`replicas`] (heartbeats, the hand-off queue, notifications), [`catalog`] (the bazaar
//! discovery catalog), `console` (read-only aggregates for the operator console), `sessions`
//! (sign-in nonces, entitlements), `migrate` (the schema, per backend).

mod access;
mod budgets;
pub mod catalog;
mod console;
mod migrate;
mod presence;
mod replicas;
mod sessions;
mod settlements;
mod signers;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor};

pub use access::{NewKey, StoredKey};
pub use budgets::{BudgetLine, Hold, Reservation, utc_day};
pub use catalog::{
    ListingAccept, ListingFilter, ListingOrder, ListingPayment, ListingQuery, ListingRow,
    NewListing, PriceRange, PruneReport, UpsertOutcome,
};
pub use console::{LeaseRow, StateCount, VolumeGroup};
pub use replicas::{HANDOFF_CHANNEL, OUTCOME_CHANNEL};
pub use sessions::{EntitledPayment, EntitlementLookup};
pub use settlements::{
    Answer, ClaimOutcome, ClaimToken, Collected, Collector, Fence, HANDOFF_ANSWER_GRACE, Included,
    NewClaim, ReceiptQuery, SettlementRecord, SettlementState, Submission, TxRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
}

/// What a compare-and-set did. A lost one means the row is no longer the caller's (its lease
/// ran out and someone took it over, or it is not in the state the caller expected), so the
/// caller must not act as if it still held it.
#[must_use = "a lost compare-and-set means the row is not the caller's: match on it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Applied,
    Lost,
}

impl Transition {
    fn of(result: AnyQueryResult) -> Self {
        if result.rows_affected() == 1 {
            Transition::Applied
        } else {
            Transition::Lost
        }
    }

    pub fn applied(self) -> bool {
        self == Transition::Applied
    }
}

/// Which database the pool talks to. The SQL is shared; a statement that must differ (none yet
/// in this module) branches on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The ledger: a connection pool and the backend it speaks to.
pub struct Ledger {
    pool: AnyPool,
    backend: Backend,
    /// Kept for the Postgres notification listener (never logged: it may carry a password).
    url: String,
    /// SQLite only: the "no row for this payment" answer without the pool's thread hop.
    presence: Option<presence::Presence>,
}

pub type SharedLedger = Arc<Ledger>;

/// Opens the backend named by the URL scheme and applies pending migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<SharedLedger, LedgerError> {
    let ledger = Ledger::connect(url, max_connections, acquire_timeout).await?;
    ledger.migrate().await?;
    Ok(Arc::new(ledger))
}

impl Ledger {
    /// Connects without migrating. SQLite files are created when missing.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, with_param(url, "mode", "rwc"))
        } else {
            (
                Backend::Postgres,
                with_param(url, "application_name", "x402-facilitator"),
            )
        };
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout);
        let pool = match backend {
            // WAL lets readers (verify's replay check) run beside the one writer; FULL sync
            // because a claim that a crash forgets could let a payment be settled twice.
            Backend::Sqlite => {
                options
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000;",
                            )
                            .await
                            .map(|_| ())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.connect(&url).await?,
        };
        let presence = match backend {
            Backend::Sqlite => presence::Presence::for_pool(&pool, &url).await,
            Backend::Postgres => None,
        };
        Ok(Ledger {
            pool,
            backend,
            url,
            presence,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many replay lookups were answered "absent" beside the pool (src/ledger/presence.rs);
    /// 0 on Postgres. For tests that must prove the fast path ran, not only that answers agree.
    #[doc(hidden)]
    pub fn absent_answers_beside_the_pool(&self) -> u64 {
        self.presence
            .as_ref()
            .map_or(0, presence::Presence::answered_absent)
    }

    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// `url` with `key=value` added to its query unless the URL sets `key` already.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    if query.split('&').any(|kv| kv.split('=').next() == Some(key)) {
        return url.to_string();
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{key}={value}")
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `now + d` in unix milliseconds.
pub(crate) fn ms_after(d: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::with_param;

    #[test]
    fn adds_a_query_parameter_only_when_missing() {
        assert_eq!(
            with_param("sqlite://x.db", "mode", "rwc"),
            "sqlite://x.db?mode=rwc"
        );
        assert_eq!(
            with_param("sqlite://x.db?mode=ro", "mode", "rwc"),
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(
            with_param("postgres://h/db?sslmode=require", "application_name", "a"),
            "postgres://h/db?sslmode=require&application_name=a"
        );
    }
}

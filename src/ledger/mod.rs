//! The settlement ledger: one row per payment, keyed by the payment's on-chain replay key, so
//! that a payment is settled at most once across requests, replicas and restarts.
//!
//! Every change is a single compare-and-set statement whose row count decides what happens next
//! (house style §5): `claim` is an insert that may conflict; later transitions name the state
//! they expect. Two backends honour one contract: Postgres (production, several replicas) and
//! SQLite (the embedded default). All SQL lives in this module.
//!
//! States: `claimed` (reserved, nothing broadcast) → `submitted` (a signed transaction id is
//! recorded *before* it is broadcast) → `settled` | `failed`. A `claimed` row whose settle ends
//! without broadcasting is deleted (`release`), so the same authorization can be retried; a
//! `failed` row may be claimed again because the chain did not consume the authorization.

mod migrate;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use postgres::PostgresLedger;
pub use sqlite::SqliteLedger;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    Claimed,
    Submitted,
    Settled,
    Failed,
}

impl SettlementState {
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementState::Claimed => "claimed",
            SettlementState::Submitted => "submitted",
            SettlementState::Settled => "settled",
            SettlementState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, LedgerError> {
        Ok(match s {
            "claimed" => SettlementState::Claimed,
            "submitted" => SettlementState::Submitted,
            "settled" => SettlementState::Settled,
            "failed" => SettlementState::Failed,
            other => return Err(LedgerError::Corrupt(format!("unknown state `{other}`"))),
        })
    }
}

/// What a settle claims before it does anything on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    pub replay_key: String,
    pub network: String,
    pub scheme: String,
    pub x402_version: u8,
    pub payer: String,
    pub pay_to: String,
    pub asset: String,
    pub amount: String,
    pub resource_url: Option<String>,
    pub payment_id: Option<String>,
    /// The facilitator request JSON, kept so that reconciliation needs nothing else.
    pub request: String,
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecord {
    pub replay_key: String,
    pub network: String,
    pub scheme: String,
    pub x402_version: u8,
    pub payer: String,
    pub pay_to: String,
    pub asset: String,
    pub amount: String,
    pub resource_url: Option<String>,
    pub payment_id: Option<String>,
    pub request: String,
    pub state: SettlementState,
    pub claim_token: String,
    pub tx_id: Option<String>,
    pub raw_tx: Option<String>,
    pub signer: Option<String>,
    pub error_reason: Option<String>,
    pub attempts: i64,
    pub reconciles: i64,
    /// Unix ms until which the holder of `claim_token` may act on the row alone.
    pub lease_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub settled_at: Option<i64>,
}

impl SettlementRecord {
    pub fn lease_active(&self, now_ms: i64) -> bool {
        self.lease_until > now_ms
    }
}

/// Proof of holding a row: every transition by the holder names it, so a holder that lost the
/// row (its lease expired and someone took over) can no longer change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(pub String);

impl ClaimToken {
    fn new() -> Self {
        ClaimToken(uuid::Uuid::new_v4().simple().to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The row is ours: nothing else may act on this payment until we record or release it.
    Claimed(ClaimToken),
    /// Someone claimed it first; here is their row.
    Existing(Box<SettlementRecord>),
}

/// The signer lease a transaction is recorded under (see `signer_leases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub signer: String,
    pub holder: String,
    pub fence: i64,
}

/// What a transaction records before it is broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission<'a> {
    pub tx_id: &'a str,
    pub raw_tx: &'a str,
    pub signer: &'a str,
    /// The live signer lease the transaction must be recorded under, when the signer is leased.
    pub fence: Option<&'a Fence>,
}

/// The first sight of a payment-identifier, or what was stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentIdOutcome {
    New,
    Existing {
        request_hash: String,
        response: Option<String>,
    },
}

/// Filters of the receipts list; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptQuery {
    pub payer: Option<String>,
    pub pay_to: Option<String>,
    pub network: Option<String>,
    /// Unix ms, inclusive.
    pub from_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub to_ms: Option<i64>,
    pub state: Option<SettlementState>,
    /// Keyset cursor: rows strictly older than this (created_at, replay_key).
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    async fn find(&self, replay_key: &str) -> Result<Option<SettlementRecord>, LedgerError>;
    /// Insert a `claimed` row holding a lease, or re-claim a `failed` one.
    async fn claim(&self, claim: &NewClaim, lease: Duration) -> Result<ClaimOutcome, LedgerError>;
    /// Take over the row `seen` (as read) once its lease has expired, provided nobody changed it
    /// since it was read (same state, holder and transaction): acting on an outdated copy could
    /// judge the wrong transaction. The new token replaces the old holder's.
    async fn take_over(
        &self,
        seen: &SettlementRecord,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LedgerError>;
    /// `claimed | submitted → submitted(tx)`, before the broadcast, only while `fence` is live.
    async fn record_submitted(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        submission: &Submission<'_>,
    ) -> Result<bool, LedgerError>;
    /// `submitted(tx_id) → settled`.
    async fn record_settled(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        tx_id: &str,
    ) -> Result<bool, LedgerError>;
    /// `claimed | submitted → failed(reason)`.
    async fn record_failed(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        reason: &str,
    ) -> Result<bool, LedgerError>;
    /// Delete a `claimed` row: nothing was broadcast, so the payment may be retried.
    async fn release(&self, replay_key: &str, token: &ClaimToken) -> Result<bool, LedgerError>;
    /// Give up the lease early: the client is being answered `settlement_pending`, so its retry
    /// may take the row over at once; the reconciler waits `reconciler_wait` to leave it the
    /// chance. Marks the row as owing that client its final answer.
    async fn end_lease(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        reconciler_wait: Duration,
    ) -> Result<bool, LedgerError>;
    /// Consumes the final answer owed after a `settlement_pending` (true once per such row).
    async fn take_pending_report(&self, replay_key: &str) -> Result<bool, LedgerError>;
    /// Gives the row up like `end_lease`, and keeps the reconciler away from it for
    /// `retry_after` (a client's identical settle may still take it at once).
    async fn defer(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        retry_after: Duration,
    ) -> Result<bool, LedgerError>;
    /// Unfinished rows whose lease has expired and whose retry time has come, oldest first: the
    /// reconciler's work list.
    async fn stale(&self, limit: i64) -> Result<Vec<SettlementRecord>, LedgerError>;
    /// The row that recorded transaction `tx_id`.
    async fn by_transaction(&self, tx_id: &str) -> Result<Option<SettlementRecord>, LedgerError>;
    /// Rows matching `query`, newest first.
    async fn list(&self, query: &ReceiptQuery) -> Result<Vec<SettlementRecord>, LedgerError>;
    async fn remember_payment_id(
        &self,
        id: &str,
        request_hash: &str,
    ) -> Result<PaymentIdOutcome, LedgerError>;
    async fn store_payment_response(&self, id: &str, response: &str) -> Result<(), LedgerError>;
    /// Acquires or renews the lease on `signer` for `holder`; `Some(fence)` when held.
    async fn lease_signer(
        &self,
        signer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, LedgerError>;
    async fn release_signer(&self, signer: &str, holder: &str) -> Result<(), LedgerError>;
    async fn ping(&self) -> Result<(), LedgerError>;
}

pub type SharedLedger = Arc<dyn Ledger>;

/// Opens the backend named by the URL scheme and applies pending migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<SharedLedger, LedgerError> {
    if url.starts_with("sqlite:") {
        let ledger = SqliteLedger::connect(url, max_connections, acquire_timeout).await?;
        ledger.migrate().await?;
        Ok(Arc::new(ledger))
    } else {
        let ledger = PostgresLedger::connect(url, max_connections, acquire_timeout).await?;
        ledger.migrate().await?;
        Ok(Arc::new(ledger))
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

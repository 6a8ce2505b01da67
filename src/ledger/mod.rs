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

    fn parse(s: &str) -> Result<Self, LedgerError> {
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
    pub state: SettlementState,
    pub tx_id: Option<String>,
    pub signer: Option<String>,
    pub error_reason: Option<String>,
    pub attempts: i64,
    /// Unix ms until which the request that holds the row may act on it alone.
    pub lease_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SettlementRecord {
    pub fn lease_active(&self, now_ms: i64) -> bool {
        self.lease_until > now_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The row is ours: nothing else may act on this payment until we record or release it.
    Claimed,
    /// Someone claimed it first; here is their row.
    Existing(Box<SettlementRecord>),
}

#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    async fn find(&self, replay_key: &str) -> Result<Option<SettlementRecord>, LedgerError>;
    /// Insert a `claimed` row holding a lease, or re-claim a `failed` one.
    async fn claim(&self, claim: &NewClaim, lease: Duration) -> Result<ClaimOutcome, LedgerError>;
    /// Take the lease of a row in `state` whose lease has expired.
    async fn take_over(
        &self,
        replay_key: &str,
        state: SettlementState,
        lease: Duration,
    ) -> Result<bool, LedgerError>;
    /// `claimed | submitted → submitted(tx_id)`; called before the transaction is broadcast.
    async fn record_submitted(
        &self,
        replay_key: &str,
        tx_id: &str,
        signer: &str,
    ) -> Result<bool, LedgerError>;
    /// `submitted(tx_id) → settled`.
    async fn record_settled(&self, replay_key: &str, tx_id: &str) -> Result<bool, LedgerError>;
    /// `claimed | submitted → failed(reason)`.
    async fn record_failed(&self, replay_key: &str, reason: &str) -> Result<bool, LedgerError>;
    /// Delete a `claimed` row: nothing was broadcast, so the payment may be retried.
    async fn release(&self, replay_key: &str) -> Result<bool, LedgerError>;
    /// Give up the lease early (the request is answering `settlement_pending`).
    async fn end_lease(&self, replay_key: &str) -> Result<bool, LedgerError>;
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

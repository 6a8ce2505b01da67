//! Settlement rows: the claim, its transitions, and the reads the reconciler and the receipts API
//! need. Each transition is one statement naming the state it expects and the holder's token.

use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Ledger, LedgerError, Transition, ms_after, now_ms};

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

    fn decode(row: &AnyRow) -> Result<Self, LedgerError> {
        let state: String = row.try_get("state")?;
        let version: i64 = row.try_get("x402_version")?;
        Ok(SettlementRecord {
            replay_key: row.try_get("replay_key")?,
            network: row.try_get("network")?,
            scheme: row.try_get("scheme")?,
            x402_version: u8::try_from(version)
                .map_err(|_| LedgerError::Corrupt(format!("x402_version {version}")))?,
            payer: row.try_get("payer")?,
            pay_to: row.try_get("pay_to")?,
            asset: row.try_get("asset")?,
            amount: row.try_get("amount")?,
            resource_url: row.try_get("resource_url")?,
            payment_id: row.try_get("payment_id")?,
            request: row.try_get("request")?,
            state: SettlementState::parse(&state)?,
            claim_token: row.try_get("claim_token")?,
            tx_id: row.try_get("tx_id")?,
            raw_tx: row.try_get("raw_tx")?,
            signer: row.try_get("signer")?,
            error_reason: row.try_get("error_reason")?,
            attempts: row.try_get("attempts")?,
            reconciles: row.try_get("reconciles")?,
            lease_until: row.try_get("lease_until")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            settled_at: row.try_get("settled_at")?,
        })
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

const COLUMNS: &str = "replay_key, network, scheme, x402_version, payer, pay_to, asset, amount, \
    resource_url, payment_id, request, state, claim_token, tx_id, raw_tx, signer, error_reason, \
    attempts, reconciles, lease_until, created_at, updated_at, settled_at";

/// Both claim statements bind the payment in this order: $1 replay_key … $11 request, then
/// $12 token, $13 lease_until, $14 now.
const INSERT_CLAIM: &str = "INSERT INTO settlements (replay_key, network, scheme, x402_version, \
    payer, pay_to, asset, amount, resource_url, payment_id, request, state, claim_token, attempts, \
    lease_until, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'claimed', $12, 1, $13, $14, $14) \
    ON CONFLICT (replay_key) DO NOTHING";
const RECLAIM_FAILED: &str = "UPDATE settlements SET network = $2, scheme = $3, \
    x402_version = $4, payer = $5, pay_to = $6, asset = $7, amount = $8, resource_url = $9, \
    payment_id = $10, request = $11, state = 'claimed', claim_token = $12, lease_until = $13, \
    updated_at = $14, tx_id = NULL, raw_tx = NULL, signer = NULL, error_reason = NULL, \
    attempts = attempts + 1, retry_at = 0, reconciles = 0, pending_reported = 0, \
    settled_at = NULL WHERE replay_key = $1 AND state = 'failed'";

impl Ledger {
    pub async fn find(&self, replay_key: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM settlements WHERE replay_key = $1");
        let row = sqlx::query(&sql)
            .bind(replay_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(SettlementRecord::decode).transpose()
    }

    /// Insert a `claimed` row holding a lease, or re-claim a `failed` one.
    pub async fn claim(
        &self,
        claim: &NewClaim,
        lease: Duration,
    ) -> Result<ClaimOutcome, LedgerError> {
        // A row can vanish between the insert and the read (a concurrent release), so try a
        // bounded number of times; each round is itself race-free.
        for _ in 0..3 {
            let token = ClaimToken::new();
            let now = now_ms();
            let lease_until = ms_after(lease);
            for sql in [INSERT_CLAIM, RECLAIM_FAILED] {
                let done = sqlx::query(sql)
                    .bind(&claim.replay_key)
                    .bind(&claim.network)
                    .bind(&claim.scheme)
                    .bind(i64::from(claim.x402_version))
                    .bind(&claim.payer)
                    .bind(&claim.pay_to)
                    .bind(&claim.asset)
                    .bind(&claim.amount)
                    .bind(&claim.resource_url)
                    .bind(&claim.payment_id)
                    .bind(&claim.request)
                    .bind(&token.0)
                    .bind(lease_until)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                if Transition::of(done).applied() {
                    return Ok(ClaimOutcome::Claimed(token));
                }
            }
            if let Some(existing) = self.find(&claim.replay_key).await? {
                return Ok(ClaimOutcome::Existing(Box::new(existing)));
            }
        }
        Err(LedgerError::Corrupt(format!(
            "claim of {} kept racing with deletes",
            claim.replay_key
        )))
    }

    /// Take over the row `seen` (as read) once its lease has expired, provided nobody changed it
    /// since it was read (same state, holder and transaction): acting on an outdated copy could
    /// judge the wrong transaction. The new token replaces the old holder's.
    pub async fn take_over(
        &self,
        seen: &SettlementRecord,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LedgerError> {
        let token = ClaimToken::new();
        let done = sqlx::query(
            "UPDATE settlements SET claim_token = $3, lease_until = $4, updated_at = $5 \
             WHERE replay_key = $1 AND state = $2 AND lease_until <= $5 AND claim_token = $6 \
             AND (tx_id = $7 OR (tx_id IS NULL AND $7 IS NULL))",
        )
        .bind(&seen.replay_key)
        .bind(seen.state.as_str())
        .bind(&token.0)
        .bind(ms_after(lease))
        .bind(now_ms())
        .bind(&seen.claim_token)
        .bind(&seen.tx_id)
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done).applied().then_some(token))
    }

    /// `claimed | submitted → submitted(tx)`, before the broadcast, only while `fence` is live.
    pub async fn record_submitted(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        s: &Submission<'_>,
    ) -> Result<Transition, LedgerError> {
        let now = now_ms();
        let done = match s.fence {
            None => {
                sqlx::query(
                    "UPDATE settlements SET state = 'submitted', tx_id = $3, raw_tx = $4, \
                     signer = $5, updated_at = $6 WHERE replay_key = $1 AND claim_token = $2 \
                     AND state IN ('claimed', 'submitted')",
                )
                .bind(replay_key)
                .bind(&token.0)
                .bind(s.tx_id)
                .bind(s.raw_tx)
                .bind(s.signer)
                .bind(now)
                .execute(&self.pool)
                .await?
            }
            Some(fence) => {
                sqlx::query(
                    "UPDATE settlements SET state = 'submitted', tx_id = $3, raw_tx = $4, \
                     signer = $5, updated_at = $6 WHERE replay_key = $1 AND claim_token = $2 \
                     AND state IN ('claimed', 'submitted') AND EXISTS (SELECT 1 FROM \
                     signer_leases WHERE signer = $7 AND holder = $8 AND fence = $9 \
                     AND expires_at > $6)",
                )
                .bind(replay_key)
                .bind(&token.0)
                .bind(s.tx_id)
                .bind(s.raw_tx)
                .bind(s.signer)
                .bind(now)
                .bind(&fence.signer)
                .bind(&fence.holder)
                .bind(fence.fence)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(Transition::of(done))
    }

    /// `submitted(tx_id) → settled`.
    pub async fn record_settled(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        tx_id: &str,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET state = 'settled', error_reason = NULL, updated_at = $4, \
             settled_at = $4, lease_until = 0 WHERE replay_key = $1 AND claim_token = $2 \
             AND state = 'submitted' AND tx_id = $3",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(tx_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// `claimed | submitted → failed(reason)`.
    pub async fn record_failed(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        reason: &str,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET state = 'failed', error_reason = $3, updated_at = $4, \
             lease_until = 0 WHERE replay_key = $1 AND claim_token = $2 \
             AND state IN ('claimed', 'submitted')",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(reason)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Delete a `claimed` row: nothing was broadcast, so the payment may be retried.
    pub async fn release(
        &self,
        replay_key: &str,
        token: &ClaimToken,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "DELETE FROM settlements WHERE replay_key = $1 AND claim_token = $2 \
             AND state = 'claimed'",
        )
        .bind(replay_key)
        .bind(&token.0)
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Give up the lease early: the client is being answered `settlement_pending`, so its retry
    /// may take the row over at once; the reconciler waits `reconciler_wait` to leave it the
    /// chance. Marks the row as owing that client its final answer.
    pub async fn end_lease(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        reconciler_wait: Duration,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET lease_until = 0, reconciles = reconciles + 1, \
             pending_reported = 1, retry_at = $3 WHERE replay_key = $1 AND claim_token = $2",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(ms_after(reconciler_wait))
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Consumes the final answer owed after a `settlement_pending` (applied once per such row).
    pub async fn take_pending_report(&self, replay_key: &str) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET pending_reported = 0 WHERE replay_key = $1 \
             AND state = 'settled' AND pending_reported = 1",
        )
        .bind(replay_key)
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Gives the row up like `end_lease`, and keeps the reconciler away from it for
    /// `retry_after` (a client's identical settle may still take it at once).
    pub async fn defer(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        retry_after: Duration,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET lease_until = 0, retry_at = $3, reconciles = reconciles + 1 \
             WHERE replay_key = $1 AND claim_token = $2",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(ms_after(retry_after))
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Unfinished rows whose lease has expired and whose retry time has come, oldest first: the
    /// reconciler's work list.
    pub async fn stale(&self, limit: i64) -> Result<Vec<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE state IN ('claimed', 'submitted') \
             AND lease_until <= $1 AND retry_at <= $1 ORDER BY lease_until LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(SettlementRecord::decode).collect()
    }

    /// The row that recorded transaction `tx_id`.
    pub async fn by_transaction(
        &self,
        tx_id: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE tx_id = $1 ORDER BY updated_at DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(tx_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(SettlementRecord::decode).transpose()
    }

    /// Rows matching `q`, newest first.
    pub async fn list(&self, q: &ReceiptQuery) -> Result<Vec<SettlementRecord>, LedgerError> {
        let (before_at, before_key) = match &q.before {
            Some((at, key)) => (Some(*at), Some(key.clone())),
            None => (None, None),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE ($1 IS NULL OR lower(payer) = lower($1)) \
             AND ($2 IS NULL OR lower(pay_to) = lower($2)) AND ($3 IS NULL OR network = $3) \
             AND ($4 IS NULL OR created_at >= $4) AND ($5 IS NULL OR created_at < $5) \
             AND ($6 IS NULL OR state = $6) \
             AND ($7 IS NULL OR created_at < $7 OR (created_at = $7 AND replay_key < $8)) \
             ORDER BY created_at DESC, replay_key DESC LIMIT $9"
        );
        let rows = sqlx::query(&sql)
            .bind(&q.payer)
            .bind(&q.pay_to)
            .bind(&q.network)
            .bind(q.from_ms)
            .bind(q.to_ms)
            .bind(q.state.map(|s| s.as_str()))
            .bind(before_at)
            .bind(before_key)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(SettlementRecord::decode).collect()
    }
}

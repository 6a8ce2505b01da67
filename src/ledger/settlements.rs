//! Settlement rows: the claim, its transitions, and the reads the reconciler and the receipts API
//! need. Each transition is one statement naming the state it expects and the holder's token.

use std::time::Duration;

use sqlx::Row;
use sqlx::any::{AnyQueryResult, AnyRow};

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

/// Whether a settle recording the chain's confirmation gives its client the success now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The client of the recording settle waits and is answered at once: the success stops
    /// being owed in the same statement.
    GivenNow,
    /// Nobody is answered by this record (the reconciler, a hand-off's taker, a settle whose
    /// client left): the success stays owed to the payment's client.
    Owed,
}

/// Who collects an owed answer (`Ledger::take_owed_answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    /// The request that claimed the row: its sender, or the requester of its hand-off.
    Claimer,
    /// Anyone else presenting the same payment: a retry, or a copy of it.
    Retry,
}

/// What taking an owed answer found.
#[must_use = "only a taken answer may be given as a success: match on it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collected {
    /// It was owed and is now this caller's to give.
    Taken,
    /// It is owed, and kept for the requester of its hand-off until a little after that
    /// requester's deadline: ask again later (`settlement_pending`).
    Reserved,
    /// Nothing is owed to this caller (given already, or not settled).
    NotOwed,
}

/// How long past a hand-off requester's deadline its answer stays kept for it: longer than the
/// ledger reserve the requester keeps past that deadline (400 ms, facilitator/settle.rs), with
/// room for a slow ledger write and clock skew between replicas.
pub const HANDOFF_ANSWER_GRACE: Duration = Duration::from_secs(2);

fn grace_ms() -> i64 {
    i64::try_from(HANDOFF_ANSWER_GRACE.as_millis()).unwrap_or(i64::MAX)
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
    /// The signed maximum of a payment whose charge (`amount`) the seller picks (`upto`).
    pub max_amount: Option<String>,
    pub resource_url: Option<String>,
    /// `resource_url` normalised as discovery does (origin + path): what sessions' entitlement
    /// lookup matches on.
    pub resource_key: Option<String>,
    pub payment_id: Option<String>,
    /// The scope a payment-identifier is unique in (payer and payee).
    pub payment_scope: Option<String>,
    /// The facilitator request JSON, kept so that reconciliation needs nothing else.
    pub request: String,
    /// What makes two requests the same payment (see `protocol::PaymentRequest::fingerprint`).
    pub fingerprint: String,
    /// At most one live row holds it (see `scheme::PaymentMeta::exclusive_key`).
    pub exclusive_key: Option<String>,
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
    /// What the payment moves: for `upto`, the charge the seller settled (`"0"`: nothing).
    pub amount: String,
    /// `upto`: the most the payer signed for; `None` for schemes that move what was signed.
    pub max_amount: Option<String>,
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
    pub fingerprint: Option<String>,
    pub payment_scope: Option<String>,
    /// 1 while a client that was answered `settlement_pending` is owed the final answer.
    pub owed: bool,
    pub block_number: Option<i64>,
    pub block_hash: Option<String>,
    /// When the settling transaction passed the reorg depth; until then the row is watched.
    pub finalized_at: Option<i64>,
    /// When the claim was handed to a replica holding a key, and by when it must be done.
    pub handoff_at: Option<i64>,
    pub handoff_deadline: Option<i64>,
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
            max_amount: row.try_get("max_amount")?,
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
            fingerprint: row.try_get("fingerprint")?,
            payment_scope: row.try_get("payment_scope")?,
            owed: row.try_get::<i64, _>("pending_reported")? != 0,
            block_number: row.try_get("block_number")?,
            block_hash: row.try_get("block_hash")?,
            finalized_at: row.try_get("finalized_at")?,
            handoff_at: row.try_get("handoff_at")?,
            handoff_deadline: row.try_get("handoff_deadline")?,
        })
    }

    /// Whether `fingerprint` is this row's payment. Rows from before fingerprints existed
    /// match nothing, so they are never taken over by another request.
    pub fn is_payment(&self, fingerprint: &str) -> bool {
        self.fingerprint.as_deref() == Some(fingerprint)
    }
}

/// A transaction the ledger recorded for a payment, with the request it performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    pub tx_id: String,
    pub replay_key: String,
    /// The row's `attempts` when it was recorded: transactions of one attempt share a request.
    pub attempt: i64,
    pub raw_tx: Option<String>,
    pub signer: Option<String>,
    pub request: String,
    pub fingerprint: Option<String>,
    pub recorded_at: i64,
}

impl TxRecord {
    fn decode(row: &AnyRow) -> Result<Self, LedgerError> {
        Ok(TxRecord {
            tx_id: row.try_get("tx_id")?,
            replay_key: row.try_get("replay_key")?,
            attempt: row.try_get("attempt")?,
            raw_tx: row.try_get("raw_tx")?,
            signer: row.try_get("signer")?,
            request: row.try_get("request")?,
            fingerprint: row.try_get("fingerprint")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// Where a settling transaction was included (block number and hash), for the reorg watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Included<'a> {
    pub tx_id: &'a str,
    pub block_number: Option<i64>,
    pub block_hash: Option<&'a str>,
}

/// Proof of holding a row: every transition by the holder names it, so a holder that lost the
/// row (its lease expired and someone took over) can no longer change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(pub String);

impl ClaimToken {
    /// A fresh token, for a claim or a take-over (here and in the hand-off queue).
    pub(super) fn new() -> Self {
        ClaimToken(uuid::Uuid::new_v4().simple().to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The row is ours: nothing else may act on this payment until we record or release it.
    Claimed(ClaimToken),
    /// Someone claimed it first (or it failed before); here is the row as it stands.
    Existing(Box<SettlementRecord>),
    /// The payment-identifier is held by another live payment in the same scope.
    PaymentIdTaken,
    /// The payment's exclusive key is held by another live payment.
    ExclusiveTaken,
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
    attempts, reconciles, lease_until, created_at, updated_at, settled_at, fingerprint, \
    payment_scope, pending_reported, block_number, block_hash, finalized_at, handoff_at, \
    handoff_deadline, max_amount";
const TX_COLUMNS: &str =
    "tx_id, replay_key, attempt, raw_tx, signer, request, fingerprint, recorded_at";

/// The claim and the re-claim bind the payment in this order: $1 replay_key … $11 request,
/// $12 fingerprint, $13 payment_scope, then $14 token, $15 lease_until, $16 now, $17 resource_key,
/// $18 exclusive key; the re-claim's take-over token is $19.
const INSERT_CLAIM: &str = "INSERT INTO settlements (replay_key, network, scheme, x402_version, \
    payer, pay_to, asset, amount, resource_url, payment_id, request, fingerprint, payment_scope, \
    state, claim_token, attempts, lease_until, created_at, updated_at, resource_key, exclusive_key) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'claimed', $14, 1, $15, $16, \
    $16, $17, $18) ON CONFLICT (replay_key) DO NOTHING";
/// A `failed` row claimed again by the holder of `$19` (its take-over token).
const RECLAIM_FAILED: &str = "UPDATE settlements SET network = $2, scheme = $3, \
    x402_version = $4, payer = $5, pay_to = $6, asset = $7, amount = $8, resource_url = $9, \
    payment_id = $10, request = $11, fingerprint = $12, payment_scope = $13, state = 'claimed', \
    claim_token = $14, lease_until = $15, updated_at = $16, tx_id = NULL, raw_tx = NULL, \
    signer = NULL, error_reason = NULL, attempts = attempts + 1, retry_at = 0, reconciles = 0, \
    pending_reported = 0, settled_at = NULL, block_number = NULL, block_hash = NULL, \
    finalized_at = NULL, handoff_at = NULL, handoff_deadline = NULL, handoff_signer = NULL, \
    resource_key = $17, exclusive_key = $18 WHERE replay_key = $1 AND state = 'failed' \
    AND claim_token = $19";

/// Keeps a row's `max_amount` in step with the payment it now records, by its holder: a
/// statement of its own, run beside the claim, re-claim and repair ones.
const SET_MAX_AMOUNT: &str =
    "UPDATE settlements SET max_amount = $2 WHERE replay_key = $1 AND claim_token = $3";

/// Whether a database error is the payment-identifier index refusing a second live payment.
fn is_payment_id_taken(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.is_unique_violation()
        && (db.constraint() == Some("settlements_payment_id")
            || db.message().contains("payment_scope"))
}

/// Whether a database error is the exclusive-key index refusing a second live payment.
fn is_exclusive_taken(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.is_unique_violation()
        && (db.constraint() == Some("settlements_exclusive_key")
            || db.message().contains("exclusive_key"))
}

impl Ledger {
    /// The live (not failed) row holding `exclusive_key`, for a read-only check at `/verify`.
    pub async fn by_exclusive_key(
        &self,
        exclusive_key: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE exclusive_key = $1 AND state <> 'failed'"
        );
        let row = sqlx::query(&sql)
            .bind(exclusive_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(SettlementRecord::decode).transpose()
    }

    pub async fn find(&self, replay_key: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        // Nearly every `/verify` of a new payment ends here on SQLite (see `presence`).
        if let Some(presence) = &self.presence
            && presence.settlement_exists(replay_key) == Some(false)
        {
            return Ok(None);
        }
        let sql = format!("SELECT {COLUMNS} FROM settlements WHERE replay_key = $1");
        let row = sqlx::query(&sql)
            .bind(replay_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(SettlementRecord::decode).transpose()
    }

    /// Insert a `claimed` row holding a lease; an existing row (in any state, `failed` included)
    /// is returned as it stands for the core to judge.
    pub async fn claim(
        &self,
        claim: &NewClaim,
        lease: Duration,
    ) -> Result<ClaimOutcome, LedgerError> {
        // A row can vanish between the insert and the read (a concurrent release): then
        // nothing holds the payment and the insert is tried again, a bounded number of times.
        for _ in 0..3 {
            let token = ClaimToken::new();
            let inserted = match &claim.max_amount {
                None => {
                    bind_claim(sqlx::query(INSERT_CLAIM), claim, &token, lease)
                        .execute(&self.pool)
                        .await
                }
                Some(max) => self.insert_with_max(claim, &token, lease, max).await,
            };
            match inserted.map(Transition::of) {
                Ok(Transition::Applied) => return Ok(ClaimOutcome::Claimed(token)),
                Ok(Transition::Lost) => {}
                Err(e) if is_payment_id_taken(&e) => return Ok(ClaimOutcome::PaymentIdTaken),
                Err(e) if is_exclusive_taken(&e) => return Ok(ClaimOutcome::ExclusiveTaken),
                Err(e) => return Err(e.into()),
            }
            if let Some(existing) = self.find(&claim.replay_key).await? {
                return Ok(ClaimOutcome::Existing(Box::new(existing)));
            }
        }
        Err(LedgerError::Corrupt(format!(
            "the claim of {} kept racing with releases",
            claim.replay_key
        )))
    }

    /// The claim's insert and its `max_amount` in one transaction: a row that names a signed
    /// maximum never exists without it.
    async fn insert_with_max(
        &self,
        claim: &NewClaim,
        token: &ClaimToken,
        lease: Duration,
        max: &str,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        let mut db = self.pool.begin().await?;
        let inserted = bind_claim(sqlx::query(INSERT_CLAIM), claim, token, lease)
            .execute(&mut *db)
            .await?;
        if inserted.rows_affected() == 1 {
            sqlx::query(SET_MAX_AMOUNT)
                .bind(&claim.replay_key)
                .bind(max)
                .bind(&token.0)
                .execute(&mut *db)
                .await?;
        }
        db.commit().await?;
        Ok(inserted)
    }

    /// `failed → claimed` for a new attempt at the payment, by the holder of `token` (the
    /// failed row taken over after its transactions were re-examined): `Claimed` with the new
    /// attempt's token, `Existing` (the row as it stands) when the take-over was lost,
    /// `PaymentIdTaken` or `ExclusiveTaken`.
    pub async fn reclaim(
        &self,
        claim: &NewClaim,
        token: &ClaimToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, LedgerError> {
        let fresh = ClaimToken::new();
        let mut db = self.pool.begin().await?;
        let done = bind_claim(sqlx::query(RECLAIM_FAILED), claim, &fresh, lease)
            .bind(&token.0)
            .execute(&mut *db)
            .await;
        let done = match done.map(Transition::of) {
            Ok(done) => done,
            Err(e) if is_payment_id_taken(&e) => return Ok(ClaimOutcome::PaymentIdTaken),
            Err(e) if is_exclusive_taken(&e) => return Ok(ClaimOutcome::ExclusiveTaken),
            Err(e) => return Err(e.into()),
        };
        if done == Transition::Lost {
            db.rollback().await?;
            return match self.find(&claim.replay_key).await? {
                Some(row) => Ok(ClaimOutcome::Existing(Box::new(row))),
                None => Err(LedgerError::Corrupt(format!(
                    "the row of {} vanished while it was claimed again",
                    claim.replay_key
                ))),
            };
        }
        sqlx::query(SET_MAX_AMOUNT)
            .bind(&claim.replay_key)
            .bind(&claim.max_amount)
            .bind(&fresh.0)
            .execute(&mut *db)
            .await?;
        db.commit().await?;
        Ok(ClaimOutcome::Claimed(fresh))
    }

    /// The live (not failed) row holding payment-identifier `id` in `scope`.
    pub async fn by_payment_id(
        &self,
        scope: &str,
        id: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE payment_scope = $1 AND payment_id = $2 \
             AND state <> 'failed'"
        );
        let row = sqlx::query(&sql)
            .bind(scope)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(SettlementRecord::decode).transpose()
    }

    /// Every transaction recorded for a payment, oldest first.
    pub async fn txs(&self, replay_key: &str) -> Result<Vec<TxRecord>, LedgerError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM settlement_txs WHERE replay_key = $1 \
             ORDER BY recorded_at, tx_id"
        );
        let rows = sqlx::query(&sql)
            .bind(replay_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(TxRecord::decode).collect()
    }

    /// Take over the row `seen` (as read) once its lease has expired, provided nobody changed it
    /// since it was read (same state, holder and transaction): acting on an outdated copy could
    /// judge the wrong transaction. The new token replaces the old holder's. A claimed row queued
    /// for a hand-off is only taken by a key holder (`take_handoffs`) until its requester's
    /// deadline: its lease was given up for that taker, not for a copy of the payload.
    pub async fn take_over(
        &self,
        seen: &SettlementRecord,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LedgerError> {
        let token = ClaimToken::new();
        let done = sqlx::query(
            "UPDATE settlements SET claim_token = $3, lease_until = $4, updated_at = $5 \
             WHERE replay_key = $1 AND state = $2 AND lease_until <= $5 AND claim_token = $6 \
             AND (tx_id = $7 OR (tx_id IS NULL AND $7 IS NULL)) \
             AND NOT (state = 'claimed' AND handoff_at IS NOT NULL \
             AND COALESCE(handoff_deadline, 0) > $5)",
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

    /// `claimed | submitted → submitted(tx)`, before the broadcast, only while `fence` is live;
    /// the transaction joins the payment's recorded ones (a replacement keeps the earlier ones,
    /// any of which may still be mined). The attempt's first transaction makes its client owed
    /// the outcome; a replacement leaves what is owed as it stands (after a reorg re-opened a
    /// payment whose success was already given, a fee bump must not owe it a second time).
    pub async fn record_submitted(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        s: &Submission<'_>,
    ) -> Result<Transition, LedgerError> {
        let now = now_ms();
        // A leased signer's transaction is recorded only while its lease ($7–$9) is live.
        let live_fence = match s.fence {
            None => "",
            Some(_) => {
                " AND EXISTS (SELECT 1 FROM signer_leases WHERE signer = $7 AND holder = $8 \
                 AND fence = $9 AND expires_at > $6)"
            }
        };
        let sql = format!(
            "UPDATE settlements SET state = 'submitted', tx_id = $3, raw_tx = $4, signer = $5, \
             updated_at = $6, pending_reported = CASE WHEN state = 'claimed' THEN 1 \
             ELSE pending_reported END WHERE replay_key = $1 AND claim_token = $2 \
             AND state IN ('claimed', 'submitted'){live_fence}"
        );
        let mut q = sqlx::query(&sql)
            .bind(replay_key)
            .bind(&token.0)
            .bind(s.tx_id)
            .bind(s.raw_tx)
            .bind(s.signer)
            .bind(now);
        if let Some(fence) = s.fence {
            q = q.bind(&fence.signer).bind(&fence.holder).bind(fence.fence);
        }
        let mut db = self.pool.begin().await?;
        let done = q.execute(&mut *db).await?;
        let done = Transition::of(done);
        if done.applied() {
            sqlx::query(
                "INSERT INTO settlement_txs (tx_id, replay_key, attempt, raw_tx, signer, request, \
                 fingerprint, recorded_at) SELECT $2, replay_key, attempts, $3, $4, request, \
                 fingerprint, $5 FROM settlements WHERE replay_key = $1 \
                 ON CONFLICT (tx_id) DO NOTHING",
            )
            .bind(replay_key)
            .bind(s.tx_id)
            .bind(s.raw_tx)
            .bind(s.signer)
            .bind(now)
            .execute(&mut *db)
            .await?;
            // The fee reserved for this send is spent with the record, atomically: a crash
            // before the settle keeps it leaves no reservation for a later attempt to adopt.
            Self::spend_hold(&mut db, replay_key).await?;
        }
        db.commit().await?;
        Ok(done)
    }

    /// `submitted → settled` by `included`: the transaction the chain mined for the payment
    /// (the newest, one it replaced, or someone else's that executed the same authorization,
    /// which then joins the payment's transactions so that receipts find it). With
    /// `Answer::GivenNow` the success stops being owed in the same statement, so that no copy
    /// of the payload can collect it between the record and the answer (docs/ledger.md, "Owed
    /// answers").
    pub async fn record_settled(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        included: &Included<'_>,
        answer: Answer,
    ) -> Result<Transition, LedgerError> {
        let mut db = self.pool.begin().await?;
        adopt_tx(&mut db, replay_key, token, included.tx_id, "('submitted')").await?;
        let done = sqlx::query(
            "UPDATE settlements SET state = 'settled', tx_id = $3, block_number = $4, \
             block_hash = $5, error_reason = NULL, updated_at = $6, settled_at = $6, \
             lease_until = 0, retry_at = 0, finalized_at = NULL, \
             pending_reported = CASE WHEN $7 = 1 THEN 0 ELSE pending_reported END \
             WHERE replay_key = $1 AND claim_token = $2 \
             AND state = 'submitted' AND EXISTS (SELECT 1 FROM settlement_txs t \
             WHERE t.tx_id = $3 AND t.replay_key = $1)",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(included.tx_id)
        .bind(included.block_number)
        .bind(included.block_hash)
        .bind(now_ms())
        .bind(i64::from(answer == Answer::GivenNow))
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(Transition::of(done))
    }

    /// `claimed → settled` with no transaction, for a charge of 0 under a signed maximum
    /// (`upto`): nothing was sent, and the row keeps the payment's replay key spent. The
    /// statement itself refuses any other payment (the amount must be `0`, the maximum named,
    /// no transaction recorded in this attempt); the row is final at once (nothing to watch).
    pub async fn record_settled_empty(
        &self,
        replay_key: &str,
        token: &ClaimToken,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET state = 'settled', tx_id = '', raw_tx = NULL, \
             error_reason = NULL, updated_at = $3, settled_at = $3, finalized_at = $3, \
             lease_until = 0 WHERE replay_key = $1 AND claim_token = $2 AND state = 'claimed' \
             AND amount = '0' AND max_amount IS NOT NULL AND tx_id IS NULL",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// `claimed | submitted | failed → settled` by a transaction of an *earlier* attempt, which
    /// the chain shows moved the money: the row is repaired with the payment that transaction
    /// performed (`claim`, revived from its recorded request). Its client was told otherwise,
    /// so it is owed the success. The row takes the exclusive key of that payment, unless
    /// another live row took it meanwhile: then the chain paid both, and the repaired row goes
    /// without the key rather than not be repaired (the index allows one live holder).
    pub async fn repair_settled(
        &self,
        claim: &NewClaim,
        token: &ClaimToken,
        included: &Included<'_>,
    ) -> Result<Transition, LedgerError> {
        let mut db = self.pool.begin().await?;
        adopt_tx(
            &mut db,
            &claim.replay_key,
            token,
            included.tx_id,
            "('claimed', 'submitted', 'failed')",
        )
        .await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE settlements SET network = $2, scheme = $3, x402_version = $4, payer = $5, \
             pay_to = $6, asset = $7, amount = $8, resource_url = $9, payment_id = $10, \
             request = $11, fingerprint = $12, payment_scope = $13, state = 'settled', \
             tx_id = $14, block_number = $15, block_hash = $16, error_reason = NULL, \
             attempts = (SELECT t.attempt FROM settlement_txs t WHERE t.tx_id = $14), \
             updated_at = $17, settled_at = $17, lease_until = 0, pending_reported = 1, \
             finalized_at = NULL, resource_key = $19, exclusive_key = CASE WHEN EXISTS (SELECT 1 \
             FROM settlements o WHERE o.exclusive_key = $20 AND o.state <> 'failed' \
             AND o.replay_key <> $1) THEN NULL ELSE $20 END WHERE replay_key = $1 AND claim_token = $18 \
             AND state IN ('claimed', 'submitted', 'failed') AND EXISTS (SELECT 1 FROM settlement_txs t \
             WHERE t.tx_id = $14 AND t.replay_key = $1)",
        )
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
        .bind(&claim.fingerprint)
        .bind(&claim.payment_scope)
        .bind(included.tx_id)
        .bind(included.block_number)
        .bind(included.block_hash)
        .bind(now)
        .bind(&token.0)
        .bind(&claim.resource_key)
        .bind(&claim.exclusive_key)
        .execute(&mut *db)
        .await;
        match done {
            Ok(done) => {
                let done = Transition::of(done);
                if done.applied() {
                    sqlx::query(SET_MAX_AMOUNT)
                        .bind(&claim.replay_key)
                        .bind(&claim.max_amount)
                        .bind(&token.0)
                        .execute(&mut *db)
                        .await?;
                }
                db.commit().await?;
                Ok(done)
            }
            // A live holder of its exclusive key committed between the check and the write:
            // the chain paid both, so the row is repaired without the key (one retry).
            Err(e) if is_exclusive_taken(&e) => {
                db.rollback().await?;
                let mut without_key = claim.clone();
                without_key.exclusive_key = None;
                Box::pin(self.repair_settled(&without_key, token, included)).await
            }
            // Its payment-identifier went to another payment meanwhile: settle the row without
            // the id rather than not at all.
            Err(e) if is_payment_id_taken(&e) => {
                // The failed statement aborted the transaction: roll it back whole.
                db.rollback().await?;
                let mut without_id = claim.clone();
                without_id.payment_id = None;
                Box::pin(self.repair_settled(&without_id, token, included)).await
            }
            Err(e) => Err(e.into()),
        }
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

    /// Delete a `claimed` row under which no transaction was ever recorded: nothing was
    /// broadcast, so the payment may be retried, and its fee reservation, if it holds one, is
    /// given back in the same transaction (before anyone can claim the payment anew). A row
    /// with a transaction history is never deleted (lost: record it as failed instead).
    pub async fn release(
        &self,
        replay_key: &str,
        token: &ClaimToken,
    ) -> Result<Transition, LedgerError> {
        let mut db = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM settlements WHERE replay_key = $1 AND claim_token = $2 \
             AND state = 'claimed' AND NOT EXISTS (SELECT 1 FROM settlement_txs \
             WHERE replay_key = $1)",
        )
        .bind(replay_key)
        .bind(&token.0)
        .execute(&mut *db)
        .await?;
        let done = Transition::of(done);
        if done.applied() {
            Self::release_hold(&mut db, replay_key).await?;
        }
        db.commit().await?;
        Ok(done)
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

    /// Consumes the final answer owed to the payment's client (taken once per such answer).
    /// The caller has checked that the request is the row's payment; a row with a
    /// payment-identifier owes its answer only to a request carrying that id (it is not on
    /// chain, unlike the rest of a payment). A handed-off payment's answer is kept for its
    /// requester, which waits for it on another replica, until a little after the requester's
    /// deadline (`HANDOFF_ANSWER_GRACE`); anyone else presenting the payment meanwhile is told
    /// it is reserved, so that one payment never gets two successes.
    pub async fn take_owed_answer(
        &self,
        replay_key: &str,
        payment_id: Option<&str>,
        by: Collector,
    ) -> Result<Collected, LedgerError> {
        // The claimer passes any reservation; anyone else only one that has ended.
        let reserved_until_before = match by {
            Collector::Claimer => i64::MAX,
            Collector::Retry => now_ms().saturating_sub(grace_ms()),
        };
        // One statement: an owed row is taken unless it is kept for a hand-off's requester, and
        // says which, so that nothing changes between looking and taking (with two statements
        // a reservation ending in between turned an owed answer into a replay refusal).
        let row = sqlx::query(
            "UPDATE settlements SET pending_reported = CASE WHEN handoff_at IS NULL \
             OR COALESCE(handoff_deadline, 0) <= $3 THEN 0 ELSE 1 END \
             WHERE replay_key = $1 AND state = 'settled' AND pending_reported = 1 \
             AND (payment_id IS NULL OR payment_id = $2) \
             RETURNING CAST(CASE WHEN handoff_at IS NULL \
             OR COALESCE(handoff_deadline, 0) <= $3 THEN 1 ELSE 0 END AS BIGINT) AS taken",
        )
        .bind(replay_key)
        .bind(payment_id)
        .bind(reserved_until_before)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Collected::NotOwed,
            Some(r) if r.try_get::<i64, _>("taken")? == 1 => Collected::Taken,
            Some(_) => Collected::Reserved,
        })
    }

    /// A hand-off's requester stops waiting without having given the success (its client left):
    /// what is owed is no longer kept for it, and the client's retry may collect it at once.
    pub async fn end_reservation(&self, replay_key: &str) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET handoff_deadline = 0 WHERE replay_key = $1 \
             AND state = 'settled' AND handoff_at IS NOT NULL AND handoff_deadline > 0",
        )
        .bind(replay_key)
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Owes the answer again after `take_owed_answer` took it for a client that stopped
    /// waiting before it was told.
    pub async fn owe_again(&self, replay_key: &str) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET pending_reported = 1 WHERE replay_key = $1 \
             AND state = 'settled' AND pending_reported = 0",
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

    /// Unfinished rows of `networks` whose lease has expired and whose retry time has come,
    /// oldest first: the reconciler's work list (only what this process can finish).
    pub async fn stale(
        &self,
        networks: &[String],
        limit: i64,
    ) -> Result<Vec<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE state IN ('claimed', 'submitted') \
             AND lease_until <= $1 AND retry_at <= $1 AND network IN ({}) \
             AND (handoff_at IS NULL OR state <> 'claimed' OR handoff_deadline <= $1) \
             ORDER BY lease_until LIMIT $2",
            placeholders(3, networks.len())
        );
        let q = sqlx::query(&sql).bind(now_ms()).bind(limit);
        self.records_on(q, networks).await
    }

    /// Failed rows of `networks` that recorded transactions, failed within the last hour, whose
    /// retry time has come: looked at again in case a verdict was wrong (a lagging node, a
    /// transaction mined after all).
    pub async fn failed_to_recheck(
        &self,
        networks: &[String],
        limit: i64,
    ) -> Result<Vec<SettlementRecord>, LedgerError> {
        let now = now_ms();
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements s WHERE state = 'failed' AND retry_at <= $1 \
             AND updated_at >= $2 AND network IN ({}) AND EXISTS (SELECT 1 FROM settlement_txs t \
             WHERE t.replay_key = s.replay_key) ORDER BY retry_at, updated_at LIMIT $3",
            placeholders(4, networks.len())
        );
        let q = sqlx::query(&sql)
            .bind(now)
            .bind(now - 3_600_000)
            .bind(limit);
        self.records_on(q, networks).await
    }

    /// Settled rows of `networks` whose transaction is not yet past the reorg depth, oldest
    /// first: the reorg watch's work list.
    pub async fn unfinal(
        &self,
        networks: &[String],
        limit: i64,
    ) -> Result<Vec<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE state = 'settled' \
             AND finalized_at IS NULL AND retry_at <= $2 AND network IN ({}) \
             ORDER BY settled_at LIMIT $1",
            placeholders(3, networks.len())
        );
        let q = sqlx::query(&sql).bind(limit).bind(now_ms());
        self.records_on(q, networks).await
    }

    /// Runs one of the background work lists (`stale`, `failed_to_recheck`, `unfinal`): `q`
    /// has bound every parameter before the `network IN (…)` list that [`placeholders`] wrote,
    /// and the networks come last.
    async fn records_on<'q>(
        &self,
        q: AnyQuery<'q>,
        networks: &'q [String],
    ) -> Result<Vec<SettlementRecord>, LedgerError> {
        let q = networks.iter().fold(q, |q, n| q.bind(n));
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(SettlementRecord::decode).collect()
    }

    /// The reorg watch could not judge a settled row: look again after `after`.
    pub async fn watch_later(
        &self,
        replay_key: &str,
        after: Duration,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET retry_at = $2 WHERE replay_key = $1 AND state = 'settled'",
        )
        .bind(replay_key)
        .bind(ms_after(after))
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// The settled row's transaction passed the reorg depth: stop watching it.
    pub async fn finalize(&self, replay_key: &str, tx_id: &str) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET finalized_at = $3 WHERE replay_key = $1 AND tx_id = $2 \
             AND state = 'settled' AND finalized_at IS NULL",
        )
        .bind(replay_key)
        .bind(tx_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// `settled → submitted`: the block that carried the settling transaction left the chain
    /// (a reorg), so the payment is reconciled again from chain state. What is owed stays as
    /// it is: a client still owed the outcome keeps it, one already answered is not answered
    /// again.
    pub async fn unsettle(&self, seen: &SettlementRecord) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET state = 'submitted', lease_until = 0, retry_at = 0, \
             settled_at = NULL, block_number = NULL, block_hash = NULL, \
             updated_at = $4 WHERE replay_key = $1 AND state = 'settled' AND tx_id = $2 \
             AND finalized_at IS NULL AND claim_token = $3",
        )
        .bind(&seen.replay_key)
        .bind(&seen.tx_id)
        .bind(&seen.claim_token)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// The row that recorded transaction `tx_id` (as its current one, or as one it replaced).
    pub async fn by_transaction(
        &self,
        tx_id: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM settlements WHERE tx_id = $1 OR replay_key IN \
             (SELECT replay_key FROM settlement_txs WHERE tx_id = $1) \
             ORDER BY updated_at DESC LIMIT 1"
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

/// `$start, $start+1, …` for `n` values (at least one placeholder, so `IN ()` never appears;
/// with no values it binds nothing and matches nothing).
pub(super) fn placeholders(start: usize, n: usize) -> String {
    if n == 0 {
        return "NULL".into();
    }
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A statement with its arguments, on either backend.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_claim<'q>(
    q: AnyQuery<'q>,
    claim: &'q NewClaim,
    token: &ClaimToken,
    lease: Duration,
) -> AnyQuery<'q> {
    q.bind(&claim.replay_key)
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
        .bind(&claim.fingerprint)
        .bind(&claim.payment_scope)
        .bind(token.0.clone())
        .bind(ms_after(lease))
        .bind(now_ms())
        .bind(&claim.resource_key)
        .bind(&claim.exclusive_key)
}

/// Records a transaction the payment was settled by but that we did not sign (its hash only),
/// for the holder of the row while it is in one of `states` (an SQL list: the states the
/// transition that follows accepts, so a refused transition leaves no trace); a transaction
/// already recorded is left as it is.
async fn adopt_tx(
    db: &mut sqlx::AnyConnection,
    replay_key: &str,
    token: &ClaimToken,
    tx_id: &str,
    states: &'static str,
) -> Result<(), LedgerError> {
    sqlx::query(&format!(
        "INSERT INTO settlement_txs (tx_id, replay_key, attempt, raw_tx, signer, request, \
         fingerprint, recorded_at) SELECT $3, replay_key, attempts, NULL, NULL, request, \
         fingerprint, $4 FROM settlements WHERE replay_key = $1 AND claim_token = $2 \
         AND state IN {states} ON CONFLICT (tx_id) DO NOTHING"
    ))
    .bind(replay_key)
    .bind(&token.0)
    .bind(tx_id)
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

//! Replicas and the hand-off queue: each process's heartbeat (so that replicas count each other
//! and take fair shares of the signer keys), claimed payments handed to a replica that holds a
//! key for their network (the one key they must be sent from, when they name one), and Postgres
//! notifications that wake whoever waits for either.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgListener;

use super::settlements::{ClaimToken, SettlementRecord, SettlementState, placeholders};
use super::{Backend, Ledger, LedgerError, Transition, ms_after, now_ms};

/// Channel on which a hand-off is announced (payload: the network).
pub const HANDOFF_CHANNEL: &str = "x402_handoff";
/// Channel on which a handed-off payment's outcome is announced (payload: the replay key).
pub const OUTCOME_CHANNEL: &str = "x402_outcome";

impl Ledger {
    /// Says this process is alive for `ttl`.
    pub async fn heartbeat(&self, holder: &str, ttl: Duration) -> Result<(), LedgerError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO replicas (holder, started_at, heartbeat_at, expires_at) \
             VALUES ($1, $2, $2, $3) ON CONFLICT (holder) DO UPDATE SET \
             heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
        )
        .bind(holder)
        .bind(now)
        .bind(ms_after(ttl))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many processes are alive (at least this one), and the oldest expired rows cleared.
    pub async fn live_replicas(&self) -> Result<i64, LedgerError> {
        let now = now_ms();
        // Rows dead for a day are history nobody needs.
        sqlx::query("DELETE FROM replicas WHERE expires_at < $1")
            .bind(now - 86_400_000)
            .execute(&self.pool)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM replicas WHERE expires_at > $1")
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(1))
    }

    /// A clean shutdown: the others need not wait for the heartbeat to expire.
    pub async fn leave(&self, holder: &str) -> Result<(), LedgerError> {
        sqlx::query("UPDATE replicas SET expires_at = 0 WHERE holder = $1")
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `claimed` (held with `token`) → queued for a key holder until `deadline_ms`: the holder
    /// of the lease `signer` when the payment can only be sent from that key, else of any key
    /// of its network. The claim's lease is given up so that the taker can take the row over;
    /// nothing was recorded under it.
    pub async fn hand_off(
        &self,
        replay_key: &str,
        token: &ClaimToken,
        deadline_ms: i64,
        signer: Option<&str>,
    ) -> Result<Transition, LedgerError> {
        let done = sqlx::query(
            "UPDATE settlements SET handoff_at = $3, handoff_deadline = $4, handoff_signer = $5, \
             lease_until = 0, updated_at = $3 \
             WHERE replay_key = $1 AND claim_token = $2 AND state = 'claimed'",
        )
        .bind(replay_key)
        .bind(&token.0)
        .bind(now_ms())
        .bind(deadline_ms)
        .bind(signer)
        .execute(&self.pool)
        .await?;
        Ok(Transition::of(done))
    }

    /// Takes up to `limit` queued hand-offs of `networks` (oldest first) with a fresh token and
    /// lease each: those any key of the network may send, and those pinned to one of `signers`
    /// (the signer leases this process holds). Postgres locks the rows it looks at (`FOR
    /// UPDATE SKIP LOCKED`), so replicas taking at once never wait for, or get, the same row;
    /// SQLite (one process) has no queue.
    pub async fn take_handoffs(
        &self,
        networks: &[String],
        signers: &[String],
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<(SettlementRecord, ClaimToken)>, LedgerError> {
        if self.backend != Backend::Postgres || networks.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut db = self.pool.begin().await?;
        let network_list = placeholders(3, networks.len());
        let pinned = if signers.is_empty() {
            String::new()
        } else {
            format!(
                " OR handoff_signer IN ({})",
                placeholders(3 + networks.len(), signers.len())
            )
        };
        let sql = format!(
            "SELECT replay_key FROM settlements WHERE state = 'claimed' AND handoff_at IS NOT NULL \
             AND handoff_deadline > $1 AND lease_until <= $1 AND network IN ({network_list}) \
             AND (handoff_signer IS NULL{pinned}) \
             ORDER BY handoff_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        );
        let mut q = sqlx::query(&sql).bind(now).bind(limit);
        for n in networks.iter().chain(signers) {
            q = q.bind(n);
        }
        let keys: Vec<String> = q
            .fetch_all(&mut *db)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("replay_key"))
            .collect::<Result<_, _>>()?;
        let mut taken = Vec::with_capacity(keys.len());
        for key in keys {
            let token = ClaimToken::new();
            sqlx::query(
                "UPDATE settlements SET claim_token = $2, lease_until = $3, updated_at = $4 \
                 WHERE replay_key = $1",
            )
            .bind(&key)
            .bind(&token.0)
            .bind(ms_after(lease))
            .bind(now)
            .execute(&mut *db)
            .await?;
            taken.push((key, token));
        }
        db.commit().await?;
        let mut rows = Vec::with_capacity(taken.len());
        for (key, token) in taken {
            if let Some(row) = self.find(&key).await? {
                rows.push((row, token));
            }
        }
        Ok(rows)
    }

    /// The hander-off takes back a hand-off nobody took by its deadline: the row (with nothing
    /// recorded under it) is deleted, so the payment may be settled later, and its fee
    /// reservation is given back with it (as `release` does).
    pub async fn withdraw_handoff(
        &self,
        replay_key: &str,
        token: &ClaimToken,
    ) -> Result<Transition, LedgerError> {
        let mut db = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM settlements WHERE replay_key = $1 AND claim_token = $2 \
             AND state = 'claimed' AND handoff_at IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM settlement_txs WHERE replay_key = $1)",
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

    /// Announces on `channel` (Postgres); nothing on SQLite, where nobody else listens.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), LedgerError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A listener on the hand-off and outcome channels (Postgres only).
    pub async fn listen(&self) -> Result<Option<PgListener>, LedgerError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener
            .listen_all([HANDOFF_CHANNEL, OUTCOME_CHANNEL])
            .await?;
        Ok(Some(listener))
    }
}

impl SettlementRecord {
    /// A hand-off queued (or taken) whose requester's deadline has not passed: nobody but a
    /// taker may take the row over.
    pub fn handoff_live(&self, now: i64) -> bool {
        self.handoff_at.is_some() && self.handoff_deadline.is_some_and(|d| d > now)
    }

    /// A hand-off queued and not yet taken by anyone.
    pub fn handoff_waiting(&self, token: &ClaimToken) -> bool {
        self.state == SettlementState::Claimed
            && self.handoff_at.is_some()
            && self.claim_token == token.0
    }
}

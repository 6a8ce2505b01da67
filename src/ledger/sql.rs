//! The ledger's SQL, written once with Postgres `$N` placeholders and rewritten to SQLite's
//! numbered `?N` form, plus the one implementation of [`super::Ledger`] both backends expand.

pub(super) const COLUMNS: &str = "replay_key, network, scheme, x402_version, payer, pay_to, asset, amount, \
    resource_url, state, tx_id, signer, error_reason, attempts, lease_until, created_at, updated_at";

/// Every statement the ledger runs, in the dialect of one backend.
pub(super) struct Statements {
    pub find: String,
    pub insert_claim: String,
    pub reclaim_failed: String,
    pub take_over: String,
    pub record_submitted: String,
    pub record_settled: String,
    pub record_failed: String,
    pub release: String,
    pub end_lease: String,
}

impl Statements {
    pub fn postgres() -> Self {
        Statements {
            find: format!("SELECT {COLUMNS} FROM settlements WHERE replay_key = $1"),
            insert_claim: "INSERT INTO settlements (replay_key, network, scheme, x402_version, payer, pay_to, \
                asset, amount, resource_url, state, attempts, lease_until, created_at, updated_at) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'claimed', 1, $10, $11, $11) \
                ON CONFLICT (replay_key) DO NOTHING"
                .into(),
            reclaim_failed: "UPDATE settlements SET state = 'claimed', tx_id = NULL, signer = NULL, \
                error_reason = NULL, attempts = attempts + 1, lease_until = $2, updated_at = $3 \
                WHERE replay_key = $1 AND state = 'failed'"
                .into(),
            take_over: "UPDATE settlements SET lease_until = $3, updated_at = $4 \
                WHERE replay_key = $1 AND state = $2 AND lease_until <= $4"
                .into(),
            record_submitted: "UPDATE settlements SET state = 'submitted', tx_id = $2, signer = $3, updated_at = $4 \
                WHERE replay_key = $1 AND state IN ('claimed', 'submitted')"
                .into(),
            record_settled: "UPDATE settlements SET state = 'settled', error_reason = NULL, updated_at = $3, \
                lease_until = 0 WHERE replay_key = $1 AND state = 'submitted' AND tx_id = $2"
                .into(),
            record_failed: "UPDATE settlements SET state = 'failed', error_reason = $2, updated_at = $3, \
                lease_until = 0 WHERE replay_key = $1 AND state IN ('claimed', 'submitted')"
                .into(),
            release: "DELETE FROM settlements WHERE replay_key = $1 AND state = 'claimed'".into(),
            end_lease: "UPDATE settlements SET lease_until = 0 WHERE replay_key = $1".into(),
        }
    }

    pub fn sqlite() -> Self {
        let pg = Self::postgres();
        let f = |s: String| s.replace('$', "?");
        Statements {
            find: f(pg.find),
            insert_claim: f(pg.insert_claim),
            reclaim_failed: f(pg.reclaim_failed),
            take_over: f(pg.take_over),
            record_submitted: f(pg.record_submitted),
            record_settled: f(pg.record_settled),
            record_failed: f(pg.record_failed),
            release: f(pg.release),
            end_lease: f(pg.end_lease),
        }
    }
}

/// Expands the [`super::Ledger`] implementation for a backend struct with `pool` and `sql` fields.
/// A macro rather than generics over `sqlx::Database`: the SQL is identical, and concrete types
/// keep the code readable without a page of executor bounds.
macro_rules! impl_ledger {
    ($ledger:ty, $row:ty) => {
        impl $ledger {
            fn decode(
                row: &$row,
            ) -> Result<$crate::ledger::SettlementRecord, $crate::ledger::LedgerError> {
                use sqlx::Row;
                let state: String = row.try_get("state")?;
                let version: i64 = row.try_get("x402_version")?;
                Ok($crate::ledger::SettlementRecord {
                    replay_key: row.try_get("replay_key")?,
                    network: row.try_get("network")?,
                    scheme: row.try_get("scheme")?,
                    x402_version: u8::try_from(version).map_err(|_| {
                        $crate::ledger::LedgerError::Corrupt(format!("x402_version {version}"))
                    })?,
                    payer: row.try_get("payer")?,
                    pay_to: row.try_get("pay_to")?,
                    asset: row.try_get("asset")?,
                    amount: row.try_get("amount")?,
                    resource_url: row.try_get("resource_url")?,
                    state: $crate::ledger::SettlementState::parse(&state)?,
                    tx_id: row.try_get("tx_id")?,
                    signer: row.try_get("signer")?,
                    error_reason: row.try_get("error_reason")?,
                    attempts: row.try_get("attempts")?,
                    lease_until: row.try_get("lease_until")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait::async_trait]
        impl $crate::ledger::Ledger for $ledger {
            async fn find(
                &self,
                replay_key: &str,
            ) -> Result<Option<$crate::ledger::SettlementRecord>, $crate::ledger::LedgerError> {
                let row = sqlx::query(&self.sql.find)
                    .bind(replay_key)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::decode).transpose()
            }

            async fn claim(
                &self,
                claim: &$crate::ledger::NewClaim,
                lease: std::time::Duration,
            ) -> Result<$crate::ledger::ClaimOutcome, $crate::ledger::LedgerError> {
                use $crate::ledger::ClaimOutcome;
                let now = $crate::ledger::now_ms();
                let lease_until = now + lease.as_millis() as i64;
                // A row can vanish between the insert and the read (a concurrent release), so
                // try a bounded number of times; each round is itself race-free.
                for _ in 0..3 {
                    let inserted = sqlx::query(&self.sql.insert_claim)
                        .bind(&claim.replay_key)
                        .bind(&claim.network)
                        .bind(&claim.scheme)
                        .bind(i64::from(claim.x402_version))
                        .bind(&claim.payer)
                        .bind(&claim.pay_to)
                        .bind(&claim.asset)
                        .bind(&claim.amount)
                        .bind(&claim.resource_url)
                        .bind(lease_until)
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                    if inserted.rows_affected() == 1 {
                        return Ok(ClaimOutcome::Claimed);
                    }
                    let reclaimed = sqlx::query(&self.sql.reclaim_failed)
                        .bind(&claim.replay_key)
                        .bind(lease_until)
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                    if reclaimed.rows_affected() == 1 {
                        return Ok(ClaimOutcome::Claimed);
                    }
                    if let Some(existing) = self.find(&claim.replay_key).await? {
                        return Ok(ClaimOutcome::Existing(Box::new(existing)));
                    }
                }
                Err($crate::ledger::LedgerError::Corrupt(format!(
                    "claim of {} kept racing with deletes",
                    claim.replay_key
                )))
            }

            async fn take_over(
                &self,
                replay_key: &str,
                state: $crate::ledger::SettlementState,
                lease: std::time::Duration,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let now = $crate::ledger::now_ms();
                let done = sqlx::query(&self.sql.take_over)
                    .bind(replay_key)
                    .bind(state.as_str())
                    .bind(now + lease.as_millis() as i64)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_submitted(
                &self,
                replay_key: &str,
                tx_id: &str,
                signer: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let done = sqlx::query(&self.sql.record_submitted)
                    .bind(replay_key)
                    .bind(tx_id)
                    .bind(signer)
                    .bind($crate::ledger::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_settled(
                &self,
                replay_key: &str,
                tx_id: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let done = sqlx::query(&self.sql.record_settled)
                    .bind(replay_key)
                    .bind(tx_id)
                    .bind($crate::ledger::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_failed(
                &self,
                replay_key: &str,
                reason: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let done = sqlx::query(&self.sql.record_failed)
                    .bind(replay_key)
                    .bind(reason)
                    .bind($crate::ledger::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release(&self, replay_key: &str) -> Result<bool, $crate::ledger::LedgerError> {
                let done = sqlx::query(&self.sql.release)
                    .bind(replay_key)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn end_lease(
                &self,
                replay_key: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let done = sqlx::query(&self.sql.end_lease)
                    .bind(replay_key)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn ping(&self) -> Result<(), $crate::ledger::LedgerError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_ledger;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_dialect_uses_numbered_question_marks() {
        let s = Statements::sqlite();
        assert!(s.insert_claim.contains("?11") && !s.insert_claim.contains('$'));
        assert!(s.find.ends_with("replay_key = ?1"));
    }
}

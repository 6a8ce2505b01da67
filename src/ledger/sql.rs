//! The ledger's SQL, written once with Postgres `$N` placeholders and rewritten to SQLite's
//! numbered `?N` form, plus the one implementation of [`super::Ledger`] both backends expand.

pub(super) const COLUMNS: &str = "replay_key, network, scheme, x402_version, payer, pay_to, asset, amount, \
    resource_url, payment_id, request, state, claim_token, tx_id, raw_tx, signer, error_reason, attempts, \
    reconciles, lease_until, created_at, updated_at, settled_at";

macro_rules! statements {
    ($($name:ident = $sql:expr;)*) => {
        /// Every statement the ledger runs, in the dialect of one backend.
        pub(super) struct Statements {
            $(pub $name: String,)*
        }

        impl Statements {
            pub fn postgres() -> Self {
                Statements { $($name: $sql,)* }
            }

            pub fn sqlite() -> Self {
                Statements { $($name: $sql.replace('$', "?"),)* }
            }
        }
    };
}

statements! {
    find = format!("SELECT {COLUMNS} FROM settlements WHERE replay_key = $1");
    insert_claim = "INSERT INTO settlements (replay_key, network, scheme, x402_version, payer, pay_to, asset, \
        amount, resource_url, payment_id, request, state, claim_token, attempts, lease_until, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'claimed', $12, 1, $13, $14, $14) \
        ON CONFLICT (replay_key) DO NOTHING".to_string();
    reclaim_failed = "UPDATE settlements SET state = 'claimed', claim_token = $2, tx_id = NULL, raw_tx = NULL, \
        signer = NULL, error_reason = NULL, attempts = attempts + 1, lease_until = $3, updated_at = $4, \
        request = $5, payer = $6, pay_to = $7, amount = $8, resource_url = $9, payment_id = $10, \
        network = $11, scheme = $12, x402_version = $13, asset = $14, retry_at = 0, reconciles = 0, \
        pending_reported = 0, settled_at = NULL WHERE replay_key = $1 AND state = 'failed'".to_string();
    take_over = "UPDATE settlements SET claim_token = $3, lease_until = $4, updated_at = $5 \
        WHERE replay_key = $1 AND state = $2 AND lease_until <= $5 AND claim_token = $6 \
        AND (tx_id = $7 OR (tx_id IS NULL AND $7 IS NULL))".to_string();
    record_submitted = "UPDATE settlements SET state = 'submitted', tx_id = $3, raw_tx = $4, signer = $5, \
        updated_at = $6 WHERE replay_key = $1 AND claim_token = $2 AND state IN ('claimed', 'submitted') \
        AND EXISTS (SELECT 1 FROM signer_leases WHERE signer = $7 AND holder = $8 AND fence = $9 \
        AND expires_at > $6)".to_string();
    record_submitted_unfenced = "UPDATE settlements SET state = 'submitted', tx_id = $3, raw_tx = $4, \
        signer = $5, updated_at = $6 WHERE replay_key = $1 AND claim_token = $2 \
        AND state IN ('claimed', 'submitted')".to_string();
    record_settled = "UPDATE settlements SET state = 'settled', error_reason = NULL, updated_at = $4, \
        settled_at = $4, lease_until = 0 WHERE replay_key = $1 AND claim_token = $2 AND state = 'submitted' \
        AND tx_id = $3".to_string();
    record_failed = "UPDATE settlements SET state = 'failed', error_reason = $3, updated_at = $4, \
        lease_until = 0 WHERE replay_key = $1 AND claim_token = $2 AND state IN ('claimed', 'submitted')".to_string();
    release = "DELETE FROM settlements WHERE replay_key = $1 AND claim_token = $2 AND state = 'claimed'".to_string();
    end_lease = "UPDATE settlements SET lease_until = 0, reconciles = reconciles + 1, pending_reported = 1, \
        retry_at = $3 WHERE replay_key = $1 AND claim_token = $2".to_string();
    take_pending_report = "UPDATE settlements SET pending_reported = 0 \
        WHERE replay_key = $1 AND state = 'settled' AND pending_reported = 1".to_string();
    stale = format!("SELECT {COLUMNS} FROM settlements WHERE state IN ('claimed', 'submitted') \
        AND lease_until <= $1 AND retry_at <= $1 ORDER BY lease_until LIMIT $2");
    defer = "UPDATE settlements SET lease_until = 0, retry_at = $3, reconciles = reconciles + 1 \
        WHERE replay_key = $1 AND claim_token = $2".to_string();
    by_transaction = format!("SELECT {COLUMNS} FROM settlements WHERE tx_id = $1 ORDER BY updated_at DESC LIMIT 1");
    list = format!("SELECT {COLUMNS} FROM settlements WHERE ($1 IS NULL OR lower(payer) = lower($1)) \
        AND ($2 IS NULL OR lower(pay_to) = lower($2)) AND ($3 IS NULL OR network = $3) AND ($4 IS NULL OR created_at >= $4) \
        AND ($5 IS NULL OR created_at < $5) AND ($6 IS NULL OR state = $6) \
        AND ($7 IS NULL OR created_at < $7 OR (created_at = $7 AND replay_key < $8)) \
        ORDER BY created_at DESC, replay_key DESC LIMIT $9");
    insert_payment_id = "INSERT INTO payment_identifiers (id, request_hash, created_at) VALUES ($1, $2, $3) \
        ON CONFLICT (id) DO NOTHING".to_string();
    find_payment_id = "SELECT request_hash, response FROM payment_identifiers WHERE id = $1".to_string();
    store_payment_response = "UPDATE payment_identifiers SET response = $2 WHERE id = $1".to_string();
    lease_signer = "INSERT INTO signer_leases (signer, holder, fence, expires_at) VALUES ($1, $2, 1, $3) \
        ON CONFLICT (signer) DO UPDATE SET \
        fence = CASE WHEN signer_leases.holder = excluded.holder THEN signer_leases.fence ELSE signer_leases.fence + 1 END, \
        holder = excluded.holder, expires_at = excluded.expires_at \
        WHERE signer_leases.holder = excluded.holder OR signer_leases.expires_at <= $4 \
        RETURNING fence".to_string();
    release_signer = "DELETE FROM signer_leases WHERE signer = $1 AND holder = $2".to_string();
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
                    payment_id: row.try_get("payment_id")?,
                    request: row.try_get("request")?,
                    state: $crate::ledger::SettlementState::parse(&state)?,
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

            async fn changed<'q>(
                &self,
                q: sqlx::query::Query<
                    'q,
                    <$row as sqlx::Row>::Database,
                    <<$row as sqlx::Row>::Database as sqlx::Database>::Arguments<'q>,
                >,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                Ok(q.execute(&self.pool).await?.rows_affected() == 1)
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
                use $crate::ledger::{ClaimOutcome, ClaimToken};
                // A row can vanish between the insert and the read (a concurrent release), so
                // try a bounded number of times; each round is itself race-free.
                for _ in 0..3 {
                    let now = $crate::ledger::now_ms();
                    let lease_until = now + lease.as_millis() as i64;
                    let token = ClaimToken::new();
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
                        .bind(&claim.payment_id)
                        .bind(&claim.request)
                        .bind(&token.0)
                        .bind(lease_until)
                        .bind(now);
                    if self.changed(inserted).await? {
                        return Ok(ClaimOutcome::Claimed(token));
                    }
                    let reclaimed = sqlx::query(&self.sql.reclaim_failed)
                        .bind(&claim.replay_key)
                        .bind(&token.0)
                        .bind(lease_until)
                        .bind(now)
                        .bind(&claim.request)
                        .bind(&claim.payer)
                        .bind(&claim.pay_to)
                        .bind(&claim.amount)
                        .bind(&claim.resource_url)
                        .bind(&claim.payment_id)
                        .bind(&claim.network)
                        .bind(&claim.scheme)
                        .bind(i64::from(claim.x402_version))
                        .bind(&claim.asset);
                    if self.changed(reclaimed).await? {
                        return Ok(ClaimOutcome::Claimed(token));
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
                seen: &$crate::ledger::SettlementRecord,
                lease: std::time::Duration,
            ) -> Result<Option<$crate::ledger::ClaimToken>, $crate::ledger::LedgerError> {
                let now = $crate::ledger::now_ms();
                let token = $crate::ledger::ClaimToken::new();
                let q = sqlx::query(&self.sql.take_over)
                    .bind(&seen.replay_key)
                    .bind(seen.state.as_str())
                    .bind(&token.0)
                    .bind(now + lease.as_millis() as i64)
                    .bind(now)
                    .bind(&seen.claim_token)
                    .bind(&seen.tx_id);
                Ok(self.changed(q).await?.then_some(token))
            }

            async fn record_submitted(
                &self,
                replay_key: &str,
                token: &$crate::ledger::ClaimToken,
                s: &$crate::ledger::Submission<'_>,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let now = $crate::ledger::now_ms();
                let Some(fence) = s.fence else {
                    let q = sqlx::query(&self.sql.record_submitted_unfenced)
                        .bind(replay_key)
                        .bind(&token.0)
                        .bind(s.tx_id)
                        .bind(s.raw_tx)
                        .bind(s.signer)
                        .bind(now);
                    return self.changed(q).await;
                };
                let q = sqlx::query(&self.sql.record_submitted)
                    .bind(replay_key)
                    .bind(&token.0)
                    .bind(s.tx_id)
                    .bind(s.raw_tx)
                    .bind(s.signer)
                    .bind(now)
                    .bind(&fence.signer)
                    .bind(&fence.holder)
                    .bind(fence.fence);
                self.changed(q).await
            }

            async fn record_settled(
                &self,
                replay_key: &str,
                token: &$crate::ledger::ClaimToken,
                tx_id: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let q = sqlx::query(&self.sql.record_settled)
                    .bind(replay_key)
                    .bind(&token.0)
                    .bind(tx_id)
                    .bind($crate::ledger::now_ms());
                self.changed(q).await
            }

            async fn record_failed(
                &self,
                replay_key: &str,
                token: &$crate::ledger::ClaimToken,
                reason: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let q = sqlx::query(&self.sql.record_failed)
                    .bind(replay_key)
                    .bind(&token.0)
                    .bind(reason)
                    .bind($crate::ledger::now_ms());
                self.changed(q).await
            }

            async fn release(
                &self,
                replay_key: &str,
                token: &$crate::ledger::ClaimToken,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                self.changed(
                    sqlx::query(&self.sql.release)
                        .bind(replay_key)
                        .bind(&token.0),
                )
                .await
            }

            async fn end_lease(
                &self,
                replay_key: &str,
                token: &$crate::ledger::ClaimToken,
                reconciler_wait: std::time::Duration,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let retry_at = $crate::ledger::now_ms() + reconciler_wait.as_millis() as i64;
                self.changed(
                    sqlx::query(&self.sql.end_lease)
                        .bind(replay_key)
                        .bind(&token.0)
                        .bind(retry_at),
                )
                .await
            }

            async fn take_pending_report(
                &self,
                replay_key: &str,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                self.changed(sqlx::query(&self.sql.take_pending_report).bind(replay_key))
                    .await
            }

            async fn defer(
                &self,
                replay_key: &str,
                token: &$crate::ledger::ClaimToken,
                retry_after: std::time::Duration,
            ) -> Result<bool, $crate::ledger::LedgerError> {
                let until = $crate::ledger::now_ms() + retry_after.as_millis() as i64;
                self.changed(
                    sqlx::query(&self.sql.defer)
                        .bind(replay_key)
                        .bind(&token.0)
                        .bind(until),
                )
                .await
            }

            async fn stale(
                &self,
                limit: i64,
            ) -> Result<Vec<$crate::ledger::SettlementRecord>, $crate::ledger::LedgerError> {
                let rows = sqlx::query(&self.sql.stale)
                    .bind($crate::ledger::now_ms())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::decode).collect()
            }

            async fn by_transaction(
                &self,
                tx_id: &str,
            ) -> Result<Option<$crate::ledger::SettlementRecord>, $crate::ledger::LedgerError> {
                let row = sqlx::query(&self.sql.by_transaction)
                    .bind(tx_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::decode).transpose()
            }

            async fn list(
                &self,
                q: &$crate::ledger::ReceiptQuery,
            ) -> Result<Vec<$crate::ledger::SettlementRecord>, $crate::ledger::LedgerError> {
                let (before_at, before_key) = match &q.before {
                    Some((at, key)) => (Some(*at), Some(key.clone())),
                    None => (None, None),
                };
                let rows = sqlx::query(&self.sql.list)
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
                rows.iter().map(Self::decode).collect()
            }

            async fn remember_payment_id(
                &self,
                id: &str,
                request_hash: &str,
            ) -> Result<$crate::ledger::PaymentIdOutcome, $crate::ledger::LedgerError> {
                let q = sqlx::query(&self.sql.insert_payment_id)
                    .bind(id)
                    .bind(request_hash)
                    .bind($crate::ledger::now_ms());
                if self.changed(q).await? {
                    return Ok($crate::ledger::PaymentIdOutcome::New);
                }
                let (request_hash, response): (String, Option<String>) =
                    sqlx::query_as(&self.sql.find_payment_id)
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok($crate::ledger::PaymentIdOutcome::Existing {
                    request_hash,
                    response,
                })
            }

            async fn store_payment_response(
                &self,
                id: &str,
                response: &str,
            ) -> Result<(), $crate::ledger::LedgerError> {
                sqlx::query(&self.sql.store_payment_response)
                    .bind(id)
                    .bind(response)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn lease_signer(
                &self,
                signer: &str,
                holder: &str,
                ttl: std::time::Duration,
            ) -> Result<Option<i64>, $crate::ledger::LedgerError> {
                let now = $crate::ledger::now_ms();
                let fence: Option<i64> = sqlx::query_scalar(&self.sql.lease_signer)
                    .bind(signer)
                    .bind(holder)
                    .bind(now + ttl.as_millis() as i64)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(fence)
            }

            async fn release_signer(
                &self,
                signer: &str,
                holder: &str,
            ) -> Result<(), $crate::ledger::LedgerError> {
                sqlx::query(&self.sql.release_signer)
                    .bind(signer)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(())
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
        assert!(s.insert_claim.contains("?14") && !s.insert_claim.contains('$'));
        assert!(s.find.ends_with("replay_key = ?1"));
    }
}

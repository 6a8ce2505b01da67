//! Signer leases: which process may sign with which key. The fence grows on every change of
//! holder and is checked by the statement that records a transaction before it is broadcast.

use std::time::Duration;

use super::{Ledger, LedgerError, ms_after, now_ms};

impl Ledger {
    /// Acquires or renews the lease on `signer` for `holder`; `Some(fence)` when held.
    pub async fn lease_signer(
        &self,
        signer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, LedgerError> {
        let fence: Option<i64> = sqlx::query_scalar(
            "INSERT INTO signer_leases (signer, holder, fence, expires_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (signer) DO UPDATE SET fence = CASE WHEN signer_leases.holder = \
             excluded.holder THEN signer_leases.fence ELSE signer_leases.fence + 1 END, \
             holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE signer_leases.holder = excluded.holder OR signer_leases.expires_at <= $4 \
             RETURNING fence",
        )
        .bind(signer)
        .bind(holder)
        .bind(ms_after(ttl))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(fence)
    }

    pub async fn release_signer(&self, signer: &str, holder: &str) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM signer_leases WHERE signer = $1 AND holder = $2")
            .bind(signer)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

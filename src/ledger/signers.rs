//! Signer leases: which process may sign with which key. The fence grows on every change of
//! holder and is checked by the statement that records a transaction before it is broadcast.

use std::time::Duration;

use super::{Ledger, LedgerError, ms_after, now_ms};

impl Ledger {
    /// The networks (the part of a lease key before its last `/`) on which some process holds
    /// a live signer lease.
    pub async fn live_lease_networks(&self) -> Result<Vec<String>, LedgerError> {
        let signers: Vec<String> =
            sqlx::query_scalar("SELECT signer FROM signer_leases WHERE expires_at > $1")
                .bind(now_ms())
                .fetch_all(&self.pool)
                .await?;
        let mut networks: Vec<String> = signers
            .iter()
            .filter_map(|s| s.rsplit_once('/').map(|(n, _)| n.to_string()))
            .collect();
        networks.sort();
        networks.dedup();
        Ok(networks)
    }

    /// Settlement rows by state, for `/metrics`.
    pub async fn rows_by_state(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        Ok(
            sqlx::query_as("SELECT state, COUNT(*) FROM settlements GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?,
        )
    }

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

    /// Gives a lease up at once. The row stays (only its expiry goes), so the next holder's
    /// fence is higher than every fence before it: deleting it would restart fences at 1, and
    /// a process that held fence 1 before could then believe nobody used the key meanwhile.
    pub async fn release_signer(&self, signer: &str, holder: &str) -> Result<(), LedgerError> {
        sqlx::query("UPDATE signer_leases SET expires_at = 0 WHERE signer = $1 AND holder = $2")
            .bind(signer)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

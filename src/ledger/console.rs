//! Read-only aggregates for the operator console (`src/http/console`): settlement counts per
//! network and state, settled volume per day, and the signer-lease table. Amounts are stored as
//! decimal text (they can exceed every SQL integer type), so the databases group by amount and
//! the caller adds them up exactly; prices are few, so the groups are few.

use sqlx::Row;

use super::{Ledger, LedgerError};

const DAY_MS: i64 = 86_400_000;

/// How many rows of one network are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    pub network: String,
    pub state: String,
    pub count: i64,
}

/// Settled payments of one amount, on one UTC day, network and asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroup {
    /// Days since the unix epoch (UTC).
    pub day: i64,
    pub network: String,
    pub asset: String,
    /// Atomic units, as stored.
    pub amount: String,
    pub count: i64,
}

/// One row of `signer_leases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub signer: String,
    pub holder: String,
    pub fence: i64,
    pub expires_at: i64,
}

impl Ledger {
    pub async fn state_counts(&self) -> Result<Vec<StateCount>, LedgerError> {
        let rows = sqlx::query(
            "SELECT network, state, CAST(COUNT(*) AS BIGINT) AS n FROM settlements \
             GROUP BY network, state ORDER BY network, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StateCount {
                    network: r.try_get("network")?,
                    state: r.try_get("state")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    /// Settled payments with `settled_at >= since_ms`, grouped by day, network, asset, amount.
    pub async fn settled_volume(&self, since_ms: i64) -> Result<Vec<VolumeGroup>, LedgerError> {
        let rows = sqlx::query(
            "SELECT CAST(settled_at / $1 AS BIGINT) AS day, network, asset, amount, \
             CAST(COUNT(*) AS BIGINT) AS n FROM settlements \
             WHERE state = 'settled' AND settled_at >= $2 \
             GROUP BY CAST(settled_at / $1 AS BIGINT), network, asset, amount \
             ORDER BY day, network, asset",
        )
        .bind(DAY_MS)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VolumeGroup {
                    day: r.try_get("day")?,
                    network: r.try_get("network")?,
                    asset: r.try_get("asset")?,
                    amount: r.try_get("amount")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    pub async fn signer_leases(&self) -> Result<Vec<LeaseRow>, LedgerError> {
        let rows = sqlx::query(
            "SELECT signer, holder, CAST(fence AS BIGINT) AS fence, \
             CAST(expires_at AS BIGINT) AS expires_at FROM signer_leases ORDER BY signer",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRow {
                    signer: r.try_get("signer")?,
                    holder: r.try_get("holder")?,
                    fence: r.try_get("fence")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }
}

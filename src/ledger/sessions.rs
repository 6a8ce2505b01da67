//! Sessions' SQL: single-use sign-in nonces shared by every replica, and the entitlement lookup
//! over settled payments (migration 8).

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;

use super::{Ledger, LedgerError, Transition, now_ms};

/// A settled payment that entitles its payer to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitledPayment {
    pub tx_id: String,
    pub network: String,
    pub pay_to: String,
    pub asset: String,
    pub amount: String,
    /// Unix ms.
    pub settled_at: i64,
}

/// One entitlement question, already scoped (see `sessions::entitlement::scope`).
#[derive(Debug, Clone)]
pub struct EntitlementLookup<'a> {
    /// `settlements.resource_key`: origin + path.
    pub resource_key: &'a str,
    /// Compared without regard to case (EVM checksums).
    pub payer: &'a str,
    /// Unix ms: only payments settled at or after it count.
    pub since: i64,
    /// Only payments to one of these (lower-cased); `None`: to anyone.
    pub pay_to: Option<&'a [String]>,
    pub network: Option<&'a str>,
}

impl Ledger {
    /// Claims nonces for good until their `expires_at` (unix ms), in one statement (one commit):
    /// for each, `Applied` when this is its first claim (or the first after the previous one
    /// expired), `Lost` for a replay, in order.
    /// A key repeated in `claims` is claimed by its first occurrence, and the others are replays.
    /// The primary key decides between replicas as for one nonce; batching only shares the
    /// commit between proofs that arrived together (`sessions::nonces`).
    pub async fn claim_session_nonces(
        &self,
        claims: &[(&str, i64)],
    ) -> Result<Vec<Transition>, LedgerError> {
        // In key order, so that two replicas' batches sharing keys wait for each other's
        // uncommitted rows in one order, never in a cycle (a deadlock on Postgres); a key's
        // first occurrence is the one claimed.
        let mut first: BTreeMap<&str, i64> = BTreeMap::new();
        for (key, expires_at) in claims {
            first.entry(key).or_insert(*expires_at);
        }
        if first.is_empty() {
            return Ok(Vec::new());
        }
        let rows = (0..first.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO session_nonces (nonce_key, expires_at) VALUES {rows} \
             ON CONFLICT (nonce_key) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE session_nonces.expires_at < ${} RETURNING nonce_key",
            2 * first.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for (key, expires_at) in &first {
            q = q.bind(*key).bind(*expires_at);
        }
        let mut won: HashSet<String> = q
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("nonce_key"))
            .collect::<Result<_, _>>()?;
        // Each winning key answers its first occurrence only.
        Ok(claims
            .iter()
            .map(|(key, _)| {
                if won.remove(*key) {
                    Transition::Applied
                } else {
                    Transition::Lost
                }
            })
            .collect())
    }

    /// Deletes nonces that expired before `before` (unix ms), at most `limit` of them, so that
    /// one pass never holds the SQLite writer for long. Returns how many went.
    pub async fn prune_session_nonces(&self, before: i64, limit: i64) -> Result<u64, LedgerError> {
        let done = sqlx::query(
            "DELETE FROM session_nonces WHERE nonce_key IN (SELECT nonce_key FROM session_nonces \
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The newest settled payment answering `q`, by the `settlements_entitlement` index.
    pub async fn entitlement(
        &self,
        q: &EntitlementLookup<'_>,
    ) -> Result<Option<EntitledPayment>, LedgerError> {
        let mut sql = String::from(
            "SELECT tx_id, network, pay_to, asset, amount, settled_at FROM settlements \
             WHERE resource_key = $1 AND lower(payer) = $2 AND state = 'settled' \
             AND settled_at >= $3 AND tx_id <> ''",
        );
        let mut next = 4;
        if let Some(list) = q.pay_to {
            let marks: Vec<String> = (next..next + list.len()).map(|i| format!("${i}")).collect();
            sql.push_str(&format!(" AND lower(pay_to) IN ({})", marks.join(", ")));
            next += list.len();
        }
        if q.network.is_some() {
            sql.push_str(&format!(" AND network = ${next}"));
        }
        sql.push_str(" ORDER BY settled_at DESC LIMIT 1");
        let mut query = sqlx::query(&sql)
            .bind(q.resource_key)
            .bind(q.payer.to_lowercase())
            .bind(q.since);
        for p in q.pay_to.unwrap_or_default() {
            query = query.bind(p.as_str());
        }
        if let Some(n) = q.network {
            query = query.bind(n);
        }
        let Some(row) = query.fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        Ok(Some(EntitledPayment {
            tx_id: row.try_get::<Option<String>, _>("tx_id")?.ok_or_else(|| {
                LedgerError::Corrupt("a settled row without a transaction".into())
            })?,
            network: row.try_get("network")?,
            pay_to: row.try_get("pay_to")?,
            asset: row.try_get("asset")?,
            amount: row.try_get("amount")?,
            settled_at: row
                .try_get::<Option<i64>, _>("settled_at")?
                .unwrap_or_default(),
        }))
    }
}

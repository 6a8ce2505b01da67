//! API keys and abuse budgets (migration 4): the rows every replica shares so that a key revoked
//! on one is refused by all, and a daily fee cap is one cap for the whole cluster.
//!
//! Keys are stored as the SHA-256 of their token; the token itself is never written anywhere.
//! A budget reservation is one conditional upsert per counter inside one transaction: either
//! every counter takes the amount without passing its cap, or none does.

use super::{Ledger, LedgerError, now_ms};

/// An API key as stored (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    /// Payees the key may settle (and see receipts) for; `None` = any.
    pub pay_to: Option<Vec<String>>,
    /// The key's own rate limit (requests per second per endpoint), replacing the default.
    pub rate_per_second: Option<u32>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub replaces: Option<String>,
}

/// What to store for a new key.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub scopes: &'a [String],
    pub pay_to: Option<&'a [String]>,
    pub rate_per_second: Option<u32>,
    pub replaces: Option<&'a str>,
}

/// One counter a reservation must fit under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    pub network: String,
    pub kind: &'static str,
    pub subject: String,
    pub period: i64,
    pub cap: i64,
}

/// What a reservation did. `Exhausted` names the first counter that had no room.
#[must_use = "an exhausted budget means the work must be refused"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// The payment already held a reservation (an attempt that stopped, e.g. with a crash,
    /// before it could keep or give it back): it is this attempt's, nothing was added again.
    Adopted,
    Exhausted {
        kind: &'static str,
        spent: i64,
    },
}

type KeyRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<String>,
);

const KEY_COLUMNS: &str =
    "id, name, prefix, scopes, pay_to, rate_per_second, created_at, revoked_at, replaces";

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn stored(row: KeyRow) -> StoredKey {
    let (id, name, prefix, scopes, pay_to, rate, created_at, revoked_at, replaces) = row;
    StoredKey {
        id,
        name,
        prefix,
        scopes: split(&scopes),
        pay_to: pay_to.as_deref().map(split),
        rate_per_second: rate.and_then(|r| u32::try_from(r).ok()),
        created_at,
        revoked_at,
        replaces,
    }
}

impl Ledger {
    pub async fn create_key(&self, key: &NewKey<'_>) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, pay_to, rate_per_second, \
             created_at, revoked_at, replaces) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)",
        )
        .bind(key.id)
        .bind(key.name)
        .bind(key.prefix)
        .bind(key.key_hash)
        .bind(key.scopes.join(","))
        .bind(key.pay_to.map(|p| p.join(",")))
        .bind(key.rate_per_second.map(i64::from))
        .bind(now_ms())
        .bind(key.replaces)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live (not revoked) key with this token hash.
    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<StoredKey>, LedgerError> {
        let row: Option<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(stored))
    }

    /// Every key, newest first, revoked ones included.
    pub async fn list_keys(&self) -> Result<Vec<StoredKey>, LedgerError> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    pub async fn key(&self, id: &str) -> Result<Option<StoredKey>, LedgerError> {
        let row: Option<KeyRow> =
            sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(stored))
    }

    /// Keys ever created, revoked ones included: auth is on as soon as there is one, and
    /// revoking the last key must not open the port again.
    pub async fn keys_created(&self) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<super::Transition, LedgerError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
        Ok(super::Transition::of(done))
    }

    /// Adds `amount` to every line's counter, or to none if one would pass its cap, and notes
    /// the reservation under `hold` (one payment's row of kind `hold`, in the same
    /// transaction). When the payment already holds one — its earlier attempt stopped between
    /// reserving and keeping or giving back, e.g. killed — that one is adopted and nothing is
    /// counted twice.
    pub async fn reserve(
        &self,
        lines: &[BudgetLine],
        amount: i64,
        hold: &BudgetLine,
    ) -> Result<Reservation, LedgerError> {
        if lines.is_empty() || amount <= 0 {
            return Ok(Reservation::Reserved);
        }
        let mut db = self.pool.begin().await?;
        let noted = sqlx::query(
            "INSERT INTO budget_counters (network, kind, subject, period, spent) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (network, kind, subject, period) DO NOTHING",
        )
        .bind(&hold.network)
        .bind(hold.kind)
        .bind(&hold.subject)
        .bind(hold.period)
        .bind(amount)
        .execute(&mut *db)
        .await?;
        if noted.rows_affected() == 0 {
            db.commit().await?;
            return Ok(Reservation::Adopted);
        }
        for line in lines {
            if amount > line.cap {
                return Ok(Reservation::Exhausted {
                    kind: line.kind,
                    spent: 0,
                });
            }
            let taken: Option<i64> = sqlx::query_scalar(
                "INSERT INTO budget_counters (network, kind, subject, period, spent) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (network, kind, subject, period) \
                 DO UPDATE SET spent = budget_counters.spent + excluded.spent \
                 WHERE budget_counters.spent + excluded.spent <= $6 RETURNING spent",
            )
            .bind(&line.network)
            .bind(line.kind)
            .bind(&line.subject)
            .bind(line.period)
            .bind(amount)
            .bind(line.cap)
            .fetch_optional(&mut *db)
            .await?;
            if taken.is_none() {
                // Rolls back the lines already taken.
                drop(db);
                let spent = self.spent_on(line).await.unwrap_or(line.cap);
                return Ok(Reservation::Exhausted {
                    kind: line.kind,
                    spent,
                });
            }
        }
        db.commit().await?;
        Ok(Reservation::Reserved)
    }

    /// Gives back a reservation whose work never cost anything (no transaction was sent), once:
    /// only the transaction that removes its `hold` gives the amount back.
    pub async fn refund(
        &self,
        lines: &[BudgetLine],
        amount: i64,
        hold: &BudgetLine,
    ) -> Result<(), LedgerError> {
        if lines.is_empty() || amount <= 0 {
            return Ok(());
        }
        let mut db = self.pool.begin().await?;
        let released = Self::drop_hold(&mut db, hold).await?;
        if released == 0 {
            return Ok(());
        }
        for line in lines {
            sqlx::query(
                "UPDATE budget_counters SET spent = CASE WHEN spent > $5 THEN spent - $5 ELSE 0 END \
                 WHERE network = $1 AND kind = $2 AND subject = $3 AND period = $4",
            )
            .bind(&line.network)
            .bind(line.kind)
            .bind(&line.subject)
            .bind(line.period)
            .bind(amount)
            .execute(&mut *db)
            .await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// A reservation was spent (a transaction was recorded): its `hold` goes, the counters
    /// keep the amount.
    pub async fn keep(&self, hold: &BudgetLine) -> Result<(), LedgerError> {
        let mut db = self.pool.begin().await?;
        Self::drop_hold(&mut db, hold).await?;
        db.commit().await?;
        Ok(())
    }

    /// Removes a payment's hold rows (of any period); how many there were.
    async fn drop_hold(
        db: &mut sqlx::Transaction<'_, sqlx::Any>,
        hold: &BudgetLine,
    ) -> Result<u64, LedgerError> {
        let done = sqlx::query(
            "DELETE FROM budget_counters WHERE network = $1 AND kind = $2 AND subject = $3",
        )
        .bind(&hold.network)
        .bind(hold.kind)
        .bind(&hold.subject)
        .execute(&mut **db)
        .await?;
        Ok(done.rows_affected())
    }

    /// Adds to a counter that has no cap (e.g. failed landings), returning its new value.
    pub async fn count(&self, line: &BudgetLine, amount: i64) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO budget_counters (network, kind, subject, period, spent) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (network, kind, subject, period) \
             DO UPDATE SET spent = budget_counters.spent + excluded.spent RETURNING spent",
        )
        .bind(&line.network)
        .bind(line.kind)
        .bind(&line.subject)
        .bind(line.period)
        .bind(amount)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A counter's current value (0 when it has none yet).
    pub async fn spent_on(&self, line: &BudgetLine) -> Result<i64, LedgerError> {
        let spent: Option<i64> = sqlx::query_scalar(
            "SELECT spent FROM budget_counters WHERE network = $1 AND kind = $2 \
             AND subject = $3 AND period = $4",
        )
        .bind(&line.network)
        .bind(line.kind)
        .bind(&line.subject)
        .bind(line.period)
        .fetch_optional(&self.pool)
        .await?;
        Ok(spent.unwrap_or(0))
    }

    /// Forgets counters of periods before `period` of `kind` (they can never matter again).
    pub async fn prune_counters(&self, kind: &str, before: i64) -> Result<u64, LedgerError> {
        let done = sqlx::query("DELETE FROM budget_counters WHERE kind = $1 AND period < $2")
            .bind(kind)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

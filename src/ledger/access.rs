//! API keys (migration 4): the rows every replica shares so that a key revoked on one is refused
//! by all. The budget counters they come with are in `budgets.rs`.
//!
//! Keys are stored as the SHA-256 of their token; the token itself is never written anywhere.

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
}

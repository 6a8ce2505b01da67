//! SQLite backend: the embedded default, so `serve` runs with no database set up. One process
//! only; several replicas need Postgres.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::migrate::{CREATE_TABLE, SQLITE};
use super::sql::{Statements, impl_ledger};
use super::{LedgerError, now_ms};

pub struct SqliteLedger {
    pool: SqlitePool,
    sql: Statements,
}

impl SqliteLedger {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, LedgerError> {
        // WAL lets readers (verify's replay check) run beside the one writer; FULL sync because
        // a claim that a crash forgets could let a payment be settled twice.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(SqliteLedger {
            pool,
            sql: Statements::sqlite(),
        })
    }

    pub async fn migrate(&self) -> Result<(), LedgerError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::raw_sql(CREATE_TABLE).execute(&mut *conn).await?;
        for (version, name, sql) in SQLITE {
            let mut tx = conn.begin().await?;
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM ledger_migrations WHERE version = ?1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_some() {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| LedgerError::Migration(format!("{name}: {e}")))?;
            sqlx::query(
                "INSERT INTO ledger_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            )
            .bind(version)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

impl_ledger!(SqliteLedger, SqliteRow);

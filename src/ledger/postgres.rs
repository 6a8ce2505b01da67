//! Postgres backend: the production ledger, shared by every replica.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::migrate::{CREATE_TABLE, POSTGRES};
use super::sql::{Statements, impl_ledger};
use super::{LedgerError, now_ms};

/// Migrations from several replicas starting at once are serialised by this advisory lock.
const MIGRATION_LOCK: i64 = 0x0402_0402;

pub struct PostgresLedger {
    pool: PgPool,
    sql: Statements,
}

impl PostgresLedger {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, LedgerError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.application_name("x402-facilitator"))
            .await?;
        Ok(PostgresLedger {
            pool,
            sql: Statements::postgres(),
        })
    }

    pub async fn migrate(&self) -> Result<(), LedgerError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        let result = async {
            sqlx::raw_sql(CREATE_TABLE).execute(&mut *conn).await?;
            for (version, name, sql) in POSTGRES {
                let applied: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM ledger_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *conn)
                        .await?;
                if applied.is_some() {
                    continue;
                }
                let mut tx = conn.begin().await?;
                sqlx::raw_sql(sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| LedgerError::Migration(format!("{name}: {e}")))?;
                sqlx::query(
                    "INSERT INTO ledger_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(version)
                .bind(name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok::<(), LedgerError>(())
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        result
    }
}

impl_ledger!(PostgresLedger, PgRow);

//! The schema, per backend: numbered SQL files under `migrations/<backend>/`, compiled into the
//! binary and applied by sqlx's migrator (which serialises concurrent starts with an advisory
//! lock on Postgres and records each file's checksum in `_sqlx_migrations`).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator};

use super::{Backend, Ledger, LedgerError};

/// `(version, name, sql)` for each backend. The two lists name the same files.
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "settlements",
        include_str!("../../migrations/postgres/0001_settlements.sql"),
    ),
    (
        2,
        "money_path",
        include_str!("../../migrations/postgres/0002_money_path.sql"),
    ),
    (
        3,
        "replicas",
        include_str!("../../migrations/postgres/0003_replicas.sql"),
    ),
    (
        4,
        "access",
        include_str!("../../migrations/postgres/0004_access.sql"),
    ),
    (
        5,
        "discovery",
        include_str!("../../migrations/postgres/0005_discovery.sql"),
    ),
    (
        6,
        "exclusive_key",
        include_str!("../../migrations/postgres/0006_exclusive_key.sql"),
    ),
    (
        7,
        "upto",
        include_str!("../../migrations/postgres/0007_upto.sql"),
    ),
    (
        8,
        "sessions",
        include_str!("../../migrations/postgres/0008_sessions.sql"),
    ),
    (
        9,
        "budget_holds",
        include_str!("../../migrations/postgres/0009_budget_holds.sql"),
    ),
];

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "settlements",
        include_str!("../../migrations/sqlite/0001_settlements.sql"),
    ),
    (
        2,
        "money_path",
        include_str!("../../migrations/sqlite/0002_money_path.sql"),
    ),
    (
        3,
        "replicas",
        include_str!("../../migrations/sqlite/0003_replicas.sql"),
    ),
    (
        4,
        "access",
        include_str!("../../migrations/sqlite/0004_access.sql"),
    ),
    (
        5,
        "discovery",
        include_str!("../../migrations/sqlite/0005_discovery.sql"),
    ),
    (
        6,
        "exclusive_key",
        include_str!("../../migrations/sqlite/0006_exclusive_key.sql"),
    ),
    (
        7,
        "upto",
        include_str!("../../migrations/sqlite/0007_upto.sql"),
    ),
    (
        8,
        "sessions",
        include_str!("../../migrations/sqlite/0008_sessions.sql"),
    ),
    (
        9,
        "budget_holds",
        include_str!("../../migrations/sqlite/0009_budget_holds.sql"),
    ),
];

/// The compiled-in files of one backend, as sqlx's migrator reads them.
#[derive(Debug)]
struct Compiled(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Compiled {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

impl Ledger {
    /// Applies every migration not yet applied. Safe to run from several replicas at once.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        let files = match self.backend {
            Backend::Postgres => POSTGRES,
            Backend::Sqlite => SQLITE,
        };
        let migrator = Migrator::new(Compiled(files)).await?;
        self.adopt_first_schema(&migrator).await?;
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Ledgers created by the first release recorded their schema in `ledger_migrations` (its
    /// own migrator, since replaced by sqlx's). Such a ledger already holds migration 1: mark
    /// it applied for sqlx, once, so that upgrading keeps every row.
    async fn adopt_first_schema(&self, migrator: &Migrator) -> Result<(), LedgerError> {
        let exists = |table: &'static str| {
            let sql = match self.backend {
                Backend::Postgres => {
                    "SELECT count(*) FROM information_schema.tables \
                                      WHERE table_schema = current_schema() AND table_name = $1"
                }
                Backend::Sqlite => {
                    "SELECT count(*) FROM sqlite_master \
                                    WHERE type = 'table' AND name = $1"
                }
            };
            sqlx::query_scalar::<_, i64>(sql)
                .bind(table)
                .fetch_one(&self.pool)
        };
        if exists("ledger_migrations").await? == 0 || exists("_sqlx_migrations").await? > 0 {
            return Ok(());
        }
        let Some(first) = migrator.iter().find(|m| m.version == 1) else {
            return Ok(());
        };
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table().await?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(first.version)
        .bind(first.description.as_ref())
        .bind(true)
        .bind(first.checksum.to_vec())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

//! A small migrator: numbered SQL files under `migrations/<backend>/`, compiled in, applied in
//! order inside one transaction each, and remembered in `ledger_migrations`.

/// `(version, name, sql)` for each backend. The two lists name the same files.
pub(super) const POSTGRES: &[(i64, &str, &str)] = &[(
    1,
    "0001_settlements",
    include_str!("../../migrations/postgres/0001_settlements.sql"),
)];

pub(super) const SQLITE: &[(i64, &str, &str)] = &[(
    1,
    "0001_settlements",
    include_str!("../../migrations/sqlite/0001_settlements.sql"),
)];

pub(super) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ledger_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

//! A fresh ledger database per test: a new SQLite file, or a new database in the throwaway
//! Postgres cluster that scripts/test starts (its admin URL in TEST_DATABASE_URL).

use sqlx::Connection;

pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub fn sqlite() -> Self {
        Db::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    pub async fn postgres() -> Self {
        let admin = std::env::var("TEST_DATABASE_URL").expect(
            "TEST_DATABASE_URL is not set: run the suite with scripts/test, which starts a throwaway Postgres",
        );
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test Postgres");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b)
            .expect("URL has a database path");
        Db::Postgres(format!("{base}/{name}"))
    }

    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("ledger.db").display()),
            Db::Postgres(url) => url.clone(),
        }
    }
}

/// Both backends, for tests that must hold on each.
pub async fn both() -> [Db; 2] {
    [Db::sqlite(), Db::postgres().await]
}

impl Db {
    /// Runs statements (no result) against the ledger database.
    pub async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", self.url()))
                    .await
                    .expect("open SQLite");
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .expect("execute");
            }
            Db::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .expect("execute");
            }
        }
    }

    /// Runs a one-number query (`SELECT count(*) …`) against the ledger database.
    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }

    /// Runs a one-text query (`SELECT tx_id …`) against the ledger database.
    pub async fn text(&self, sql: &str) -> String {
        self.scalar(sql).await
    }

    async fn scalar<T>(&self, sql: &str) -> T
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        match self {
            Db::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url())
                    .await
                    .expect("open SQLite");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("query")
            }
            Db::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("query")
            }
        }
    }
}

/// How many migrations the ledger has (the same files exist for both backends).
pub fn migration_files() -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    std::fs::read_dir(dir)
        .expect("migrations/postgres")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64
}

/// A session holding a lock taken by `sql` (e.g. `LOCK TABLE … IN ACCESS EXCLUSIVE MODE`) until
/// dropped: a real lock, to hold up the app's statements on that table.
pub struct HeldLock {
    /// Dropping the connection closes it: the server rolls the transaction back and the lock
    /// goes.
    _conn: sqlx::PgConnection,
}

impl Db {
    pub async fn hold_lock(&self, sql: &str) -> HeldLock {
        let Db::Postgres(url) = self else {
            panic!("locks are held on Postgres");
        };
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::raw_sql("BEGIN")
            .execute(&mut conn)
            .await
            .expect("begin");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect("lock");
        HeldLock { _conn: conn }
    }

    /// Makes the ledger database refuse (`true`) or accept (`false`) new connections, cutting
    /// the ones open: a database that has gone away, for real.
    pub async fn refuse_connections(&self, refuse: bool) {
        let Db::Postgres(url) = self else {
            panic!("connection faults are made on Postgres");
        };
        let (base, name) = url.rsplit_once('/').expect("a database path");
        let admin =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| format!("{base}/postgres"));
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
        let allow = if refuse { "false" } else { "true" };
        sqlx::raw_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"))
            .execute(&mut conn)
            .await
            .expect("alter database");
        if refuse {
            sqlx::raw_sql(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .execute(&mut conn)
            .await
            .expect("terminate");
        }
    }
}

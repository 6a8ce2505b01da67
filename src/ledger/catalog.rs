//! The bazaar catalog's storage: resources learned from payments, the payment requirements seen
//! for each, the price range, and one row per settled payment (for usage over 30 days).
//!
//! The discovery module (`src/discovery`) validates everything before it arrives here; this file
//! only stores and queries. Full-text search differs per backend: Postgres keeps a weighted
//! `tsvector` (a generated column with a GIN index), SQLite an FTS5 table kept in step by
//! triggers (`migrations/*/0005_discovery.sql`). Everything else is shared SQL.

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{Backend, Ledger, LedgerError, Transition};

/// How many (scheme, network) accepts one resource keeps: one per kind served is the usual, and
/// the bound keeps a page of listings within what clients read.
pub const MAX_ACCEPTS: i64 = 8;

/// How many distinct (network, asset) price ranges one resource keeps. Assets are chosen by
/// whoever pays, so without a bound one resource could grow without end.
pub const MAX_PRICE_RANGES: i64 = 16;

/// A validated sighting of a paid resource, ready to be merged into the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct NewListing {
    /// The canonical URL (origin + route template, or origin + path).
    pub resource: String,
    /// `http` or `mcp`.
    pub kind: String,
    /// HTTP method, `""` for MCP tools.
    pub method: String,
    /// MCP tool name, `""` for HTTP resources.
    pub tool_name: String,
    pub x402_version: i64,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub service_name: Option<String>,
    /// Already sanitised; empty means "not given" (the stored tags are kept).
    pub tags: Vec<String>,
    pub icon_url: Option<String>,
    /// The validated `extensions.bazaar` object, as JSON.
    pub bazaar: String,
    pub accept: ListingAccept,
    /// Set when the sighting is a successful settle.
    pub payment: Option<ListingPayment>,
    /// When it was seen (unix ms).
    pub seen_at: i64,
}

/// One payment requirement of a resource, keyed by (scheme, network).
#[derive(Debug, Clone, PartialEq)]
pub struct ListingAccept {
    pub scheme: String,
    pub network: String,
    /// Normalised for matching (EVM addresses lowercased).
    pub pay_to: String,
    pub asset: String,
    /// The amount as a 78-digit zero-padded string ([`amount_key`]).
    pub amount_key: String,
    /// The seller's `PaymentRequirements` as JSON, served as one element of `accepts`.
    pub requirement: String,
}

/// The settled payment behind a sighting.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingPayment {
    pub network: String,
    pub tx_id: String,
    pub payer: String,
}

/// What a [`Ledger::upsert_listing`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// A new resource entered the catalog.
    Inserted,
    /// An existing resource was refreshed.
    Updated,
    /// A verify-only sighting of a resource that has settled payments: left untouched, so that a
    /// free `/verify` cannot rewrite what paying customers established.
    KeptSettled,
    /// The catalog is at its size bound and nothing could make room.
    Full,
}

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingOrder {
    /// Full-text rank (search); the order of first sighting otherwise (stable for offsets).
    Relevance,
    /// Most recently updated first.
    Recency,
    /// Most settled payments in the usage window first.
    Popularity,
}

/// Which resources a listing or search returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListingFilter {
    pub kind: Option<String>,
    pub pay_to: Option<String>,
    pub scheme: Option<String>,
    pub network: Option<String>,
    /// With `max_amount_key`: an accept in this asset costs at most that much.
    pub asset: Option<String>,
    pub max_amount_key: Option<String>,
    /// Resources paid for since this time (unix ms) are listed...
    pub paid_since: i64,
    /// ...and, when set, resources only verified (or paid before `paid_since`) but seen since
    /// then, after all the paid ones.
    pub include_unpaid: bool,
    /// Start of the usage window (settled payments counted since then).
    pub usage_since: i64,
}

/// A page request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingQuery {
    pub filter: ListingFilter,
    /// Search terms (letters and digits only, already split); `None` lists everything.
    pub terms: Option<Vec<String>>,
    pub order: ListingOrder,
    pub limit: i64,
    pub offset: i64,
}

/// A catalogued resource with what the facilitator has seen of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingRow {
    pub id: i64,
    pub resource: String,
    pub kind: String,
    pub method: String,
    pub tool_name: String,
    pub x402_version: i64,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub service_name: Option<String>,
    /// JSON array, as stored.
    pub tags: Option<String>,
    pub icon_url: Option<String>,
    pub bazaar: String,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub last_settled_at: Option<i64>,
    /// Whether it was paid for within the listing's window (unpaid rows come last).
    pub paid: bool,
    /// Settled payments in the usage window (counted as they are recorded, recounted by each
    /// prune as they leave it) and distinct payers in it.
    pub settled_payments: i64,
    pub payers: i64,
    /// Each accept's `PaymentRequirements` JSON, ordered by (scheme, network).
    pub accepts: Vec<String>,
    pub prices: Vec<PriceRange>,
    /// Full-text score (higher is better); 0 when listing.
    pub score: f64,
}

/// The lowest and highest amount seen in one asset, as decimal strings without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRange {
    pub network: String,
    pub asset: String,
    pub min: String,
    pub max: String,
}

/// What a [`Ledger::prune_catalog`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub aged_out: u64,
    pub over_bound: u64,
}

/// A decimal amount as 78 zero-padded digits (a uint256 has at most 78), so that comparing the
/// text compares the numbers. `None` for anything but 1–78 ASCII digits.
pub fn amount_key(amount: &str) -> Option<String> {
    let valid =
        !amount.is_empty() && amount.len() <= 78 && amount.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| format!("{amount:0>78}"))
}

/// The amount an [`amount_key`] stands for.
pub fn amount_of_key(key: &str) -> String {
    let trimmed = key.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// A statement under construction: SQL text and its arguments, numbered as they are added.
struct Statement {
    sql: String,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

impl Statement {
    fn new(sql: &str) -> Self {
        Statement {
            sql: sql.to_string(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `arg` (values never enter the SQL text).
    fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        let n = self.args.len();
        self.sql.push_str(&format!("${n}"));
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.arg(Arg::Text(value.to_string()))
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.arg(Arg::Int(value))
    }

    fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for arg in &self.args {
            q = match arg {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// Bounds each statement and each pause of a page's snapshot (Postgres; see `read_snapshot`).
/// (`set_config(…, true)` is `SET LOCAL`, both in one statement.)
const SNAPSHOT_TIMEOUT: &str = "SELECT set_config('statement_timeout', '5s', true), \
     set_config('idle_in_transaction_session_timeout', '5s', true)";

const ROW_COLUMNS: &str = "r.id, r.resource, r.kind, r.method, r.tool_name, r.x402_version, \
    r.description, r.mime_type, r.service_name, r.tags, r.icon_url, r.bazaar, r.first_seen_at, \
    r.last_seen_at, r.last_settled_at, r.settled_30d";

impl Ledger {
    /// Merges one sighting into the catalog, in one transaction: the resource (new values win
    /// where given, `bazaar` is replaced, first sighting and version are kept), its accept for
    /// this (scheme, network), the price range, and the settled payment once per transaction.
    /// A verify-only sighting never touches a resource that has been paid for. A new resource
    /// beyond `max_resources` evicts the least recently seen unpaid one when it is itself paid,
    /// and is refused otherwise.
    pub async fn upsert_listing(
        &self,
        listing: &NewListing,
        max_resources: i64,
    ) -> Result<UpsertOutcome, LedgerError> {
        // Read before taking the write lock (SQLite has one writer, shared with the settle path):
        // a sighting that changes nothing never asks for it. The INSERT's WHERE below repeats
        // the rule against a concurrent writer.
        let existing: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, last_settled_at FROM catalog_resources \
             WHERE resource = $1 AND method = $2 AND tool_name = $3",
        )
        .bind(&listing.resource)
        .bind(&listing.method)
        .bind(&listing.tool_name)
        .fetch_optional(&self.pool)
        .await?;
        let paid = listing.payment.is_some();
        if matches!(existing, Some((_, Some(_)))) && !paid {
            return Ok(UpsertOutcome::KeptSettled);
        }
        let mut tx = self.write_transaction().await?;
        match existing {
            Some(_) => {}
            None => {
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_resources")
                    .fetch_one(&mut *tx)
                    .await?;
                if count >= max_resources {
                    let evicted = if paid {
                        self.evict_unpaid(&mut tx, count - max_resources + 1)
                            .await?
                    } else {
                        0
                    };
                    if evicted == 0 {
                        return Ok(UpsertOutcome::Full);
                    }
                }
            }
        }
        let tags = (!listing.tags.is_empty())
            .then(|| serde_json::to_string(&listing.tags).unwrap_or_default());
        let tags_text = (!listing.tags.is_empty()).then(|| listing.tags.join(" "));
        let settled_at = listing.payment.as_ref().map(|_| listing.seen_at);
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO catalog_resources (resource, kind, method, tool_name, x402_version, \
             description, mime_type, service_name, tags, tags_text, icon_url, bazaar, \
             first_seen_at, last_seen_at, last_settled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14) \
             ON CONFLICT (resource, method, tool_name) DO UPDATE SET \
             description = COALESCE(excluded.description, catalog_resources.description), \
             mime_type = COALESCE(excluded.mime_type, catalog_resources.mime_type), \
             service_name = COALESCE(excluded.service_name, catalog_resources.service_name), \
             tags = COALESCE(excluded.tags, catalog_resources.tags), \
             tags_text = COALESCE(excluded.tags_text, catalog_resources.tags_text), \
             icon_url = COALESCE(excluded.icon_url, catalog_resources.icon_url), \
             bazaar = excluded.bazaar, \
             last_seen_at = excluded.last_seen_at, \
             last_settled_at = COALESCE(excluded.last_settled_at, catalog_resources.last_settled_at) \
             WHERE excluded.last_settled_at IS NOT NULL OR catalog_resources.last_settled_at IS NULL \
             RETURNING id",
        )
        .bind(&listing.resource)
        .bind(&listing.kind)
        .bind(&listing.method)
        .bind(&listing.tool_name)
        .bind(listing.x402_version)
        .bind(&listing.description)
        .bind(&listing.mime_type)
        .bind(&listing.service_name)
        .bind(tags)
        .bind(tags_text)
        .bind(&listing.icon_url)
        .bind(&listing.bazaar)
        .bind(listing.seen_at)
        .bind(settled_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(UpsertOutcome::KeptSettled);
        };
        self.merge_accept(&mut tx, id, &listing.accept).await?;
        if let Some(payment) = &listing.payment {
            let recorded = sqlx::query(
                "INSERT INTO catalog_payments (network, tx_id, resource_id, payer, settled_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (network, tx_id) DO NOTHING",
            )
            .bind(&payment.network)
            .bind(&payment.tx_id)
            .bind(id)
            .bind(&payment.payer)
            .bind(listing.seen_at)
            .execute(&mut *tx)
            .await?;
            // The popularity counter follows the payments: up by one per new transaction here,
            // recounted by `prune_catalog` as payments leave the usage window. With several
            // replicas a recount racing an increment can be one off until the next recount of
            // that resource; it is a ranking figure, not money.
            if Transition::of(recorded).applied() {
                sqlx::query(
                    "UPDATE catalog_resources SET settled_30d = settled_30d + 1 WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(if existing.is_some() {
            UpsertOutcome::Updated
        } else {
            UpsertOutcome::Inserted
        })
    }

    /// A transaction that will write. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`, waiting as long as the busy timeout): a deferred transaction that reads and
    /// then writes fails at once with SQLITE_BUSY when another connection wrote in between.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, Any>, LedgerError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Deletes up to `n` unpaid resources, least recently seen first; returns how many.
    async fn evict_unpaid(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        n: i64,
    ) -> Result<u64, LedgerError> {
        let victims = "SELECT id FROM catalog_resources WHERE last_settled_at IS NULL \
                       ORDER BY last_seen_at, id LIMIT $1";
        for child in ["catalog_accepts", "catalog_prices"] {
            sqlx::query(&format!(
                "DELETE FROM {child} WHERE resource_id IN ({victims})"
            ))
            .bind(n)
            .execute(&mut **tx)
            .await?;
        }
        let done = sqlx::query(&format!(
            "DELETE FROM catalog_resources WHERE id IN ({victims})"
        ))
        .bind(n)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// The accept for (scheme, network) replaced by the new one; the price range widened.
    async fn merge_accept(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        id: i64,
        accept: &ListingAccept,
    ) -> Result<(), LedgerError> {
        let accepts: i64 =
            sqlx::query_scalar("SELECT count(*) FROM catalog_accepts WHERE resource_id = $1")
                .bind(id)
                .fetch_one(&mut **tx)
                .await?;
        // At the bound, only the (scheme, network) pairs already held are refreshed.
        let insert = if accepts < MAX_ACCEPTS {
            "INSERT INTO catalog_accepts (resource_id, scheme, network, pay_to, asset, amount_key, \
             requirement) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (resource_id, scheme, network) DO UPDATE SET pay_to = excluded.pay_to, \
             asset = excluded.asset, amount_key = excluded.amount_key, \
             requirement = excluded.requirement"
        } else {
            "UPDATE catalog_accepts SET pay_to = $4, asset = $5, amount_key = $6, requirement = $7 \
             WHERE resource_id = $1 AND scheme = $2 AND network = $3"
        };
        sqlx::query(insert)
            .bind(id)
            .bind(&accept.scheme)
            .bind(&accept.network)
            .bind(&accept.pay_to)
            .bind(&accept.asset)
            .bind(&accept.amount_key)
            .bind(&accept.requirement)
            .execute(&mut **tx)
            .await?;
        let widened = sqlx::query(
            "UPDATE catalog_prices SET \
             min_key = CASE WHEN $4 < min_key THEN $4 ELSE min_key END, \
             max_key = CASE WHEN $4 > max_key THEN $4 ELSE max_key END \
             WHERE resource_id = $1 AND network = $2 AND asset = $3",
        )
        .bind(id)
        .bind(&accept.network)
        .bind(&accept.asset)
        .bind(&accept.amount_key)
        .execute(&mut **tx)
        .await?;
        if widened.rows_affected() == 0 {
            let ranges: i64 =
                sqlx::query_scalar("SELECT count(*) FROM catalog_prices WHERE resource_id = $1")
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?;
            if ranges < MAX_PRICE_RANGES {
                sqlx::query(
                    "INSERT INTO catalog_prices (resource_id, network, asset, min_key, max_key) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(&accept.network)
                .bind(&accept.asset)
                .bind(&accept.amount_key)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// One page of the catalog, with each resource's accepts, prices and usage. Two steps: the
    /// page's ids are chosen on the sort keys alone, then only those rows are read, so that
    /// sorting or skipping thousands of resources never carries their stored JSON along; both
    /// read one snapshot (`read_snapshot`).
    pub async fn list_listings(&self, q: &ListingQuery) -> Result<Vec<ListingRow>, LedgerError> {
        let mut tx = self.read_snapshot().await?;
        let rows = self.page_in(&mut tx, q).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// A page and the total its filter matches, both from one snapshot.
    pub async fn list_listings_with_total(
        &self,
        q: &ListingQuery,
    ) -> Result<(Vec<ListingRow>, i64), LedgerError> {
        let mut tx = self.read_snapshot().await?;
        let rows = self.page_in(&mut tx, q).await?;
        let total = self.count_in(&mut tx, q).await?;
        tx.commit().await?;
        Ok((rows, total))
    }

    async fn page_in(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        q: &ListingQuery,
    ) -> Result<Vec<ListingRow>, LedgerError> {
        let terms = q.terms.as_deref().map(clean_terms);
        if terms.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let st = self.page_statement(q, terms.as_deref());
        let mut page: Vec<(i64, f64)> = Vec::new();
        for row in st.query().fetch_all(&mut **tx).await? {
            page.push((row.try_get(0)?, row.try_get(1)?));
        }
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let mut read = Statement::new("SELECT ");
        read.push(ROW_COLUMNS)
            .push(" FROM catalog_resources r WHERE r.id IN (");
        for (i, (id, _)) in page.iter().enumerate() {
            if i > 0 {
                read.push(", ");
            }
            read.int(*id);
        }
        read.push(")");
        let mut rows = read
            .query()
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| decode_row(r, q.filter.paid_since))
            .collect::<Result<Vec<_>, _>>()?;
        // Back into the page's order; a row deleted between the two reads is left out.
        let mut listings = Vec::with_capacity(page.len());
        for (id, score) in page {
            if let Some(i) = rows.iter().position(|r| r.id == id) {
                let mut row = rows.swap_remove(i);
                row.score = score;
                listings.push(row);
            }
        }
        self.attach_details(tx, &mut listings, q.filter.usage_since)
            .await?;
        Ok(listings)
    }

    /// How many resources a listing's filter matches (`pagination.total`).
    pub async fn count_listings(&self, q: &ListingQuery) -> Result<i64, LedgerError> {
        let mut tx = self.read_snapshot().await?;
        let total = self.count_in(&mut tx, q).await?;
        tx.commit().await?;
        Ok(total)
    }

    async fn count_in(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        q: &ListingQuery,
    ) -> Result<i64, LedgerError> {
        let terms = q.terms.as_deref().map(clean_terms);
        if terms.as_ref().is_some_and(Vec::is_empty) {
            return Ok(0);
        }
        let mut st = Statement::new("SELECT count(*)");
        self.matching(&mut st, q, terms.as_deref());
        let total: i64 = st.query().fetch_one(&mut **tx).await?.try_get(0)?;
        Ok(total)
    }

    /// A transaction whose statements all read one snapshot of the catalog (behind PgBouncer it
    /// needs transaction pooling, as every multi-statement transaction here does): a page is several
    /// statements (its ids, its rows, their details, its total), and a payment committing
    /// between two of them would otherwise give a page whose order contradicts its own rows
    /// (a paid resource after an unpaid one). Postgres needs REPEATABLE READ for that (READ
    /// COMMITTED takes a snapshot per statement); a SQLite read transaction in WAL mode holds
    /// its snapshot from its first read. Neither blocks a writer.
    async fn read_snapshot(&self) -> Result<sqlx::Transaction<'static, Any>, LedgerError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                // An open snapshot holds back vacuum for the whole database: a page that cannot
                // be read in seconds is cancelled rather than kept open.
                sqlx::query(SNAPSHOT_TIMEOUT).execute(&mut *tx).await?;
                tx
            }
        })
    }

    /// `SELECT id, score` of one page, sorted.
    fn page_statement(&self, q: &ListingQuery, search: Option<&[String]>) -> Statement {
        let mut st = Statement::new("SELECT r.id, ");
        match (search, self.backend) {
            (None, _) => st.push("CAST(0 AS DOUBLE PRECISION) AS score"),
            (Some(_), Backend::Postgres) => {
                st.push("CAST(ts_rank_cd(r.search_vector, query) AS DOUBLE PRECISION) AS score")
            }
            // bm25 is lower for better matches; negated so that higher is better everywhere.
            (Some(_), Backend::Sqlite) => st.push("-bm25(catalog_search, 10.0, 5.0, 1.0) AS score"),
        };
        self.matching(&mut st, q, search);
        st.push(" ORDER BY ");
        // Unpaid resources (listed only on request) come after every paid one.
        if q.filter.include_unpaid {
            st.push("CASE WHEN r.last_settled_at >= ")
                .int(q.filter.paid_since)
                .push(" THEN 0 ELSE 1 END, ");
        }
        // Each order matches one of the covering indexes of the migration, ties included.
        match (q.order, search) {
            (ListingOrder::Relevance, Some(_)) => st.push("score DESC, r.id"),
            (ListingOrder::Relevance, None) => st.push("r.first_seen_at, r.id"),
            (ListingOrder::Recency, _) => st.push("r.last_seen_at DESC, r.id DESC"),
            (ListingOrder::Popularity, _) => st.push("r.settled_30d DESC, r.id"),
        };
        st.push(" LIMIT ")
            .int(q.limit)
            .push(" OFFSET ")
            .int(q.offset);
        st
    }

    /// `FROM … WHERE …` of the resources a query matches, every value bound.
    fn matching(&self, st: &mut Statement, q: &ListingQuery, search: Option<&[String]>) {
        let f = &q.filter;
        match (search, self.backend) {
            (None, _) => st.push(" FROM catalog_resources r WHERE 1 = 1"),
            (Some(terms), Backend::Postgres) => st
                .push(" FROM catalog_resources r, plainto_tsquery('english', ")
                .text(&terms.join(" "))
                .push(") query WHERE r.search_vector @@ query"),
            (Some(terms), Backend::Sqlite) => st
                .push(
                    " FROM catalog_search JOIN catalog_resources r ON r.id = catalog_search.rowid \
                     WHERE catalog_search MATCH ",
                )
                .text(&fts5_query(terms)),
        };
        st.push(" AND (r.last_settled_at >= ").int(f.paid_since);
        if f.include_unpaid {
            st.push(" OR r.last_seen_at >= ").int(f.paid_since);
        }
        st.push(")");
        if let Some(kind) = &f.kind {
            st.push(" AND r.kind = ").text(kind);
        }
        // Each accept filter is its own "any accept matches" test, as in the reference catalogs,
        // written as IN (subquery): the matching accepts are read once through their index.
        // SQLite, without statistics, would then fetch every matching resource row by id and
        // sort them; `+r.id` keeps it on the covering index of the sort order instead, testing
        // membership as it goes (bounded by the catalog, however common the value). Postgres
        // plans a semi-join from its statistics.
        let id = match self.backend {
            Backend::Sqlite => "+r.id",
            Backend::Postgres => "r.id",
        };
        for (column, value) in [
            ("pay_to", &f.pay_to),
            ("scheme", &f.scheme),
            ("network", &f.network),
        ] {
            if let Some(value) = value {
                st.push(&format!(
                    " AND {id} IN (SELECT resource_id FROM catalog_accepts WHERE {column} = "
                ))
                .text(value)
                .push(")");
            }
        }
        if let Some(asset) = &f.asset {
            st.push(&format!(
                " AND {id} IN (SELECT resource_id FROM catalog_accepts WHERE asset = "
            ))
            .text(asset);
            if let Some(max) = &f.max_amount_key {
                st.push(" AND amount_key <= ").text(max);
            }
            st.push(")");
        }
    }

    /// Accepts, price ranges and distinct payers of the listed resources (three queries for a
    /// whole page, not three per row).
    async fn attach_details(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        listings: &mut [ListingRow],
        usage_since: i64,
    ) -> Result<(), LedgerError> {
        if listings.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = listings.iter().map(|l| l.id).collect();
        let in_ids = |st: &mut Statement| {
            st.push(" resource_id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    st.push(", ");
                }
                st.int(*id);
            }
            st.push(")");
        };
        let mut accepts =
            Statement::new("SELECT resource_id, requirement FROM catalog_accepts WHERE");
        in_ids(&mut accepts);
        accepts.push(" ORDER BY resource_id, scheme, network");
        for row in accepts.query().fetch_all(&mut **tx).await? {
            let id: i64 = row.try_get(0)?;
            if let Some(l) = listings.iter_mut().find(|l| l.id == id) {
                l.accepts.push(row.try_get(1)?);
            }
        }
        let mut prices = Statement::new(
            "SELECT resource_id, network, asset, min_key, max_key FROM catalog_prices WHERE",
        );
        in_ids(&mut prices);
        prices.push(" ORDER BY resource_id, network, asset");
        for row in prices.query().fetch_all(&mut **tx).await? {
            let id: i64 = row.try_get(0)?;
            if let Some(l) = listings.iter_mut().find(|l| l.id == id) {
                l.prices.push(PriceRange {
                    network: row.try_get(1)?,
                    asset: row.try_get(2)?,
                    min: amount_of_key(&row.try_get::<String, _>(3)?),
                    max: amount_of_key(&row.try_get::<String, _>(4)?),
                });
            }
        }
        let mut payers = Statement::new(
            "SELECT resource_id, count(DISTINCT payer) FROM catalog_payments WHERE settled_at >= ",
        );
        payers.int(usage_since).push(" AND");
        in_ids(&mut payers);
        payers.push(" GROUP BY resource_id");
        for row in payers.query().fetch_all(&mut **tx).await? {
            let id: i64 = row.try_get(0)?;
            if let Some(l) = listings.iter_mut().find(|l| l.id == id) {
                l.payers = row.try_get(1)?;
            }
        }
        Ok(())
    }

    /// Removes resources not paid for (or, never paid, not seen) since `paid_since`, then the
    /// least recently seen unpaid ones beyond `max_resources`, then rows that belong to no
    /// resource; recounts the usage of resources whose payments leave the window that starts at
    /// `usage_since`, and deletes those payments.
    pub async fn prune_catalog(
        &self,
        paid_since: i64,
        usage_since: i64,
        max_resources: i64,
    ) -> Result<PruneReport, LedgerError> {
        let mut tx = self.write_transaction().await?;
        let aged = sqlx::query(
            "DELETE FROM catalog_resources WHERE \
             (last_settled_at IS NOT NULL AND last_settled_at < $1) \
             OR (last_settled_at IS NULL AND last_seen_at < $1)",
        )
        .bind(paid_since)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_resources")
            .fetch_one(&mut *tx)
            .await?;
        let over = if count > max_resources {
            self.evict_unpaid(&mut tx, count - max_resources).await?
        } else {
            0
        };
        for child in ["catalog_accepts", "catalog_prices", "catalog_payments"] {
            sqlx::query(&format!(
                "DELETE FROM {child} WHERE NOT EXISTS \
                 (SELECT 1 FROM catalog_resources r WHERE r.id = {child}.resource_id)"
            ))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE catalog_resources SET settled_30d = (SELECT count(*) FROM catalog_payments p \
             WHERE p.resource_id = catalog_resources.id AND p.settled_at >= $1) \
             WHERE id IN (SELECT resource_id FROM catalog_payments WHERE settled_at < $1)",
        )
        .bind(usage_since)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM catalog_payments WHERE settled_at < $1")
            .bind(usage_since)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PruneReport {
            aged_out: aged,
            over_bound: over,
        })
    }
}

/// Search terms reduced to letters and digits, empty ones dropped: whatever a caller passes, no
/// character of either backend's query syntax reaches it.
fn clean_terms(terms: &[String]) -> Vec<String> {
    terms
        .iter()
        .map(|t| {
            t.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// FTS5 query text for [`clean_terms`]: each one quoted (so that no word is ever read as an
/// operator such as `NEAR` or `OR`), all of them required.
fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_row(row: &AnyRow, paid_since: i64) -> Result<ListingRow, LedgerError> {
    let last_settled_at: Option<i64> = row.try_get("last_settled_at")?;
    Ok(ListingRow {
        id: row.try_get("id")?,
        resource: row.try_get("resource")?,
        kind: row.try_get("kind")?,
        method: row.try_get("method")?,
        tool_name: row.try_get("tool_name")?,
        x402_version: row.try_get("x402_version")?,
        description: row.try_get("description")?,
        mime_type: row.try_get("mime_type")?,
        service_name: row.try_get("service_name")?,
        tags: row.try_get("tags")?,
        icon_url: row.try_get("icon_url")?,
        bazaar: row.try_get("bazaar")?,
        first_seen_at: row.try_get("first_seen_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        last_settled_at,
        paid: last_settled_at.is_some_and(|t| t >= paid_since),
        settled_payments: row.try_get("settled_30d")?,
        payers: 0,
        accepts: Vec::new(),
        prices: Vec::new(),
        score: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_keys_order_like_numbers() {
        let k = |a| amount_key(a).expect("digits");
        assert!(k("9") < k("10"));
        assert!(k("999999") < k("1000000"));
        assert_eq!(amount_of_key(&k("2500")), "2500");
        assert_eq!(amount_of_key(&k("0")), "0");
        assert_eq!(k(&"9".repeat(78)).len(), 78);
        for bad in ["", "-1", "1.5", "0x10", " 1", &"1".repeat(79)] {
            assert_eq!(amount_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn terms_lose_every_syntax_character() {
        let raw = ["\"", "*", "acme:", "NEAR(", "x'y", "Café"].map(String::from);
        assert_eq!(clean_terms(&raw), ["acme", "NEAR", "xy", "Café"]);
    }

    #[test]
    fn fts5_terms_are_quoted() {
        assert_eq!(
            fts5_query(&["weather".into(), "NEAR".into()]),
            "\"weather\" \"NEAR\""
        );
    }
}

//! The read side: query parameters of `GET /discovery/resources` and `GET /discovery/search`
//! checked into a [`ListingQuery`], and the [`Catalog`] that runs it with the operator's
//! visibility policy (paid within `age_out_days`; unpaid only with `list_unpaid`).
//!
//! Parameters the official clients send (`type`, `payTo`, `scheme`, `network`, `extensions`,
//! `limit`, `offset`; `query`, `cursor`), plus ours: `asset`, `maxPrice` (atomic units of that
//! asset) and `sort` (`relevance`, `recency`, `popularity`). Unknown parameters are ignored so
//! that a newer client's extra filters do not break it; a malformed value is a 400.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Semaphore;

use super::ingest::normalize_address;
use super::metrics::DiscoveryMetrics;
use super::{EXTENSION, Policy, USAGE_WINDOW_MS};
use crate::ledger::catalog::amount_key;
use crate::ledger::{
    LedgerError, ListingFilter, ListingOrder, ListingQuery, ListingRow, SharedLedger, now_ms,
};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
/// Longest accepted filter value or search query, in bytes.
const MAX_PARAM: usize = 256;
/// Most words a search may have.
const MAX_TERMS: usize = 16;

/// Words so common that both backends ignore them (Postgres' `english` configuration drops them
/// itself; FTS5 would require them, so they are removed before either sees the query).
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "of",
    "on", "or", "that", "the", "this", "to", "with",
];

/// The query string of both endpoints, every value as text so that errors name the parameter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DiscoveryParams {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub pay_to: Option<String>,
    pub scheme: Option<String>,
    pub network: Option<String>,
    pub extensions: Option<String>,
    pub asset: Option<String>,
    pub max_price: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub query: Option<String>,
    pub cursor: Option<String>,
}

/// A checked request: the ledger query, or the certainty that nothing matches.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedQuery {
    pub query: ListingQuery,
    /// A filter no catalogued resource can satisfy (an extension other than `bazaar`, a search
    /// of only common words): answered empty without asking the database.
    pub matches_nothing: bool,
}

impl DiscoveryParams {
    /// The listing query of `GET /discovery/resources`.
    pub fn list(&self, policy: &Policy, now: i64) -> Result<CheckedQuery, String> {
        if self.cursor.is_some() {
            return Err("cursor belongs to /discovery/search; use offset here".into());
        }
        let offset = integer("offset", self.offset.as_deref())?.unwrap_or(0);
        self.checked(policy, now, None, offset)
    }

    /// The search query of `GET /discovery/search`.
    pub fn search(&self, policy: &Policy, now: i64) -> Result<CheckedQuery, String> {
        let text = self.query.as_deref().ok_or("query is required")?;
        if text.len() > MAX_PARAM {
            return Err(format!("query is longer than {MAX_PARAM} bytes"));
        }
        if self.offset.is_some() {
            return Err("offset belongs to /discovery/resources; use cursor here".into());
        }
        let terms = search_terms(text);
        if terms.len() > MAX_TERMS {
            return Err(format!("query has more than {MAX_TERMS} words"));
        }
        let offset = match self.cursor.as_deref() {
            None => 0,
            Some(c) => c
                .parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .ok_or("malformed cursor: pass back the cursor of the previous page")?,
        };
        let mut checked = self.checked(policy, now, Some(terms), offset)?;
        checked.matches_nothing |= checked.query.terms.as_ref().is_some_and(Vec::is_empty);
        Ok(checked)
    }

    fn checked(
        &self,
        policy: &Policy,
        now: i64,
        terms: Option<Vec<String>>,
        offset: i64,
    ) -> Result<CheckedQuery, String> {
        let field = |name: &str, v: &Option<String>| -> Result<Option<String>, String> {
            match v {
                Some(s) if s.is_empty() || s.len() > MAX_PARAM => {
                    Err(format!("{name} must be 1 to {MAX_PARAM} bytes"))
                }
                other => Ok(other.clone()),
            }
        };
        let limit = match integer("limit", self.limit.as_deref())? {
            None => DEFAULT_LIMIT,
            Some(0) => return Err(format!("limit must be between 1 and {MAX_LIMIT}")),
            // Larger pages are cut to the spec's bound rather than refused: the official clients
            // pass the caller's number through.
            Some(n) => n.min(MAX_LIMIT),
        };
        let order = match self.sort.as_deref() {
            None | Some("relevance") => ListingOrder::Relevance,
            Some("recency") => ListingOrder::Recency,
            Some("popularity") => ListingOrder::Popularity,
            Some(_) => return Err("sort must be relevance, recency or popularity".into()),
        };
        let max_amount_key = match &self.max_price {
            None => None,
            Some(p) => Some(amount_key(p).ok_or("maxPrice must be an amount in atomic units")?),
        };
        if max_amount_key.is_some() && self.asset.is_none() {
            return Err("maxPrice is in atomic units of one asset: give asset as well".into());
        }
        let extensions = field("extensions", &self.extensions)?;
        let filter = ListingFilter {
            kind: field("type", &self.kind)?,
            pay_to: field("payTo", &self.pay_to)?.map(|a| normalize_address(&a)),
            scheme: field("scheme", &self.scheme)?,
            network: field("network", &self.network)?,
            asset: field("asset", &self.asset)?.map(|a| normalize_address(&a)),
            max_amount_key,
            paid_since: now - policy.age_out_ms(),
            include_unpaid: policy.list_unpaid,
            usage_since: now - USAGE_WINDOW_MS,
        };
        Ok(CheckedQuery {
            // Only the bazaar extension is stored (another one may hold a buyer's data).
            matches_nothing: extensions.is_some_and(|e| e != EXTENSION),
            query: ListingQuery {
                filter,
                terms,
                order,
                limit,
                offset,
            },
        })
    }
}

/// A non-negative decimal integer parameter.
fn integer(name: &str, value: Option<&str>) -> Result<Option<i64>, String> {
    value
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{name} must be a non-negative integer"))
        })
        .transpose()
}

/// The words of a search: runs of letters and digits, lowercased, without duplicates or
/// [`STOP_WORDS`]. Nothing else of the text reaches the database, so no query syntax of either
/// backend (FTS5 operators, column filters, quotes) can be injected.
pub fn search_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if word.is_empty() || STOP_WORDS.contains(&word.as_str()) || terms.contains(&word) {
            continue;
        }
        terms.push(word);
    }
    terms
}

/// A page of listings.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<ListingRow>,
    pub limit: i64,
    pub offset: i64,
    /// `/discovery/resources`: how many match the filter.
    pub total: Option<i64>,
    /// `/discovery/search`: whether another page follows.
    pub more: bool,
}

/// How long a query waits for a free slot before it is answered 503.
const QUERY_WAIT: Duration = Duration::from_secs(2);

/// Why a page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Every query slot is taken: try again shortly.
    #[error("too many discovery queries in flight")]
    Busy,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The catalog as the HTTP handlers see it.
pub struct Catalog {
    ledger: SharedLedger,
    policy: Policy,
    pub metrics: Arc<DiscoveryMetrics>,
    /// The listing endpoints are public and a query reads much of the catalog, while the
    /// payments share the ledger's connection pool: at most this many queries run at once.
    slots: Semaphore,
}

impl Catalog {
    pub fn new(
        ledger: SharedLedger,
        policy: Policy,
        metrics: Arc<DiscoveryMetrics>,
        query_slots: usize,
    ) -> Self {
        Catalog {
            ledger,
            policy,
            metrics,
            slots: Semaphore::new(query_slots.max(1)),
        }
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, CatalogError> {
        match tokio::time::timeout(QUERY_WAIT, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(CatalogError::Busy),
        }
    }

    pub fn check_list(&self, params: &DiscoveryParams) -> Result<CheckedQuery, String> {
        params.list(&self.policy, now_ms())
    }

    pub fn check_search(&self, params: &DiscoveryParams) -> Result<CheckedQuery, String> {
        params.search(&self.policy, now_ms())
    }

    /// A page with its total (listing).
    pub async fn list(&self, q: &CheckedQuery) -> Result<Page, CatalogError> {
        let (rows, total) = if q.matches_nothing {
            (Vec::new(), 0)
        } else {
            let _slot = self.slot().await?;
            self.ledger.list_listings_with_total(&q.query).await?
        };
        Ok(Page {
            rows,
            limit: q.query.limit,
            offset: q.query.offset,
            total: Some(total),
            more: false,
        })
    }

    /// A page and whether another follows (search): one row more than asked is read to know.
    pub async fn search(&self, q: &CheckedQuery) -> Result<Page, CatalogError> {
        let mut rows = Vec::new();
        if !q.matches_nothing {
            let _slot = self.slot().await?;
            let mut probe = q.query.clone();
            probe.limit += 1;
            rows = self.ledger.list_listings(&probe).await?;
        }
        let more = rows.len() as i64 > q.query.limit;
        rows.truncate(q.query.limit as usize);
        Ok(Page {
            rows,
            limit: q.query.limit,
            offset: q.query.offset,
            total: None,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            queue_size: 8,
            age_out_days: 30,
            list_unpaid: false,
            max_resources: 10,
            allow_private_hosts: false,
        }
    }

    fn params(pairs: &str) -> DiscoveryParams {
        serde_urlencoded_like(pairs)
    }

    /// The same decoding axum's `Query` does (form-urlencoded into the struct).
    fn serde_urlencoded_like(pairs: &str) -> DiscoveryParams {
        let uri: axum::http::Uri = format!("/x?{pairs}").parse().expect("uri");
        axum::extract::Query::<DiscoveryParams>::try_from_uri(&uri)
            .expect("decodes")
            .0
    }

    #[test]
    fn list_parameters() {
        let q = params("type=http&payTo=0xABC&network=eip155%3A84532&limit=10&offset=5")
            .list(&policy(), 1_000_000_000_000)
            .expect("valid");
        assert_eq!(q.query.filter.pay_to.as_deref(), Some("0xabc"));
        assert_eq!(q.query.filter.network.as_deref(), Some("eip155:84532"));
        assert_eq!((q.query.limit, q.query.offset), (10, 5));
        assert!(!q.matches_nothing);
        assert_eq!(
            params("limit=500")
                .list(&policy(), 0)
                .expect("cut")
                .query
                .limit,
            100
        );
        assert!(
            params("extensions=payment-identifier")
                .list(&policy(), 0)
                .expect("ok")
                .matches_nothing
        );
        assert!(
            !params("extensions=bazaar")
                .list(&policy(), 0)
                .expect("ok")
                .matches_nothing
        );
        for bad in [
            "limit=0",
            "limit=x",
            "limit=-1",
            "limit=1.5",
            "offset=-3",
            "offset=1e3",
            "sort=random",
            "maxPrice=100",
            "maxPrice=1e6&asset=0xa",
            "maxPrice=-1&asset=0xa",
            "network=",
            "cursor=5",
        ] {
            assert!(params(bad).list(&policy(), 0).is_err(), "{bad}");
        }
        let long = format!("payTo={}", "a".repeat(300));
        assert!(params(&long).list(&policy(), 0).is_err());
        let priced = params("asset=0xAA&maxPrice=2500&sort=popularity")
            .list(&policy(), 0)
            .expect("ok");
        assert_eq!(priced.query.filter.asset.as_deref(), Some("0xaa"));
        assert_eq!(priced.query.order, ListingOrder::Popularity);
        // Unknown parameters (a newer client's filters) are ignored.
        assert!(params("maxUsdPrice=1&type=mcp").list(&policy(), 0).is_ok());
    }

    #[test]
    fn search_parameters() {
        let q = params("query=Weather+API+for+the+win&limit=3&cursor=6")
            .search(&policy(), 0)
            .expect("valid");
        assert_eq!(
            q.query.terms,
            Some(vec!["weather".into(), "api".into(), "win".into()])
        );
        assert_eq!((q.query.limit, q.query.offset), (3, 6));
        assert!(
            params("query=the+of")
                .search(&policy(), 0)
                .expect("ok")
                .matches_nothing
        );
        for bad in [
            "",
            "limit=5",
            "query=x&cursor=abc",
            "query=x&cursor=-1",
            "query=x&offset=2",
        ] {
            assert!(params(bad).search(&policy(), 0).is_err(), "{bad}");
        }
        let many = format!(
            "query={}",
            (0..17)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join("+")
        );
        assert!(params(&many).search(&policy(), 0).is_err());
    }

    #[tokio::test]
    async fn queries_beyond_the_slots_are_refused_not_queued_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let ledger = crate::ledger::connect(&url, 2, Duration::from_secs(5))
            .await
            .expect("ledger");
        let catalog = Catalog::new(ledger, policy(), Arc::default(), 1);
        let q = params("").list(&policy(), now_ms()).expect("valid");
        assert!(catalog.list(&q).await.is_ok());
        let held = catalog.slot().await.expect("the one slot");
        let started = std::time::Instant::now();
        assert!(matches!(catalog.list(&q).await, Err(CatalogError::Busy)));
        assert!(started.elapsed() >= QUERY_WAIT);
        drop(held);
        assert!(
            catalog
                .search(&params("query=x").search(&policy(), 0).expect("valid"))
                .await
                .is_ok()
        );
    }

    #[test]
    fn search_terms_carry_no_syntax() {
        assert_eq!(
            search_terms("\"weather\" OR service_name:acme* NEAR(a b) -x ^y 'z'); DROP TABLE"),
            [
                "weather", "service", "name", "acme", "near", "b", "x", "y", "z", "drop", "table"
            ]
        );
        assert_eq!(search_terms("Météo  café"), ["météo", "café"]);
    }
}

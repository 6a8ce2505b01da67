//! `GET /discovery/resources` and `GET /discovery/search`: the bazaar catalog in the reply shapes
//! the official clients parse (spec v2 §8; `@x402/extensions` 2.27 `withBazaar`, the Go and
//! Python clients: HTTP 200, `lastUpdated` an ISO-8601 string, integers as integers, `pagination`
//! an object), plus what this facilitator has seen of each resource under `observed`.
//!
//! Discovery is public. When API keys arrive, an admission extractor (like receipts'
//! `ReceiptsAuth`) becomes one more argument of each handler.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::Query;
use super::receipts::rfc3339;
use crate::discovery::query::{CatalogError, CheckedQuery, Page};
use crate::discovery::{Catalog, DiscoveryParams};
use crate::ledger::ListingRow;

fn catalog(state: &AppState) -> Result<&Catalog, ApiError> {
    state.discovery.as_deref().ok_or(ApiError::NotFound(
        "discovery is not enabled on this facilitator",
    ))
}

fn checked(result: Result<CheckedQuery, String>) -> Result<CheckedQuery, ApiError> {
    result.map_err(|m| ApiError::Unreadable(StatusCode::BAD_REQUEST, m))
}

pub(super) fn fault(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Busy => ApiError::Overloaded {
            endpoint: None,
            network: String::new(),
            retry_after: Duration::from_secs(1),
        },
        CatalogError::Ledger(e) => ApiError::Internal(e.to_string()),
    }
}

/// `GET /discovery/resources` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceList {
    x402_version: u8,
    items: Vec<DiscoveryResource>,
    pagination: ListPagination,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ListPagination {
    limit: i64,
    offset: i64,
    /// How many resources match the filter.
    total: Option<i64>,
}

/// `GET /discovery/search` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SearchResults {
    x402_version: u8,
    resources: Vec<DiscoveryResource>,
    partial_results: bool,
    pagination: SearchPagination,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SearchPagination {
    limit: i64,
    /// Opaque; pass it back as `cursor` for the next page, `null` on the last one.
    cursor: Option<String>,
}

/// One `DiscoveryResource` (spec v2 §8) with the optional fields of the TS client type when
/// known, and `observed`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DiscoveryResource {
    resource: String,
    #[serde(rename = "type")]
    kind: String,
    x402_version: i64,
    /// The seller's `PaymentRequirements`, as it last sent them.
    accepts: Vec<Value>,
    /// RFC 3339 UTC.
    last_updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mime_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    /// `{"bazaar": <the seller's bazaar extension>}`.
    extensions: Map<String, Value>,
    observed: Observed,
}

/// What the facilitator itself saw: whether (and how much, by how many payers) it was paid for
/// in the last 30 days, and the lowest and highest price per asset.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Observed {
    paid: bool,
    #[serde(rename = "settledPayments30d")]
    settled_payments_30d: i64,
    #[serde(rename = "payers30d")]
    payers_30d: i64,
    last_settled_at: Option<String>,
    first_seen_at: String,
    price_range: Vec<ObservedPrice>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ObservedPrice {
    network: String,
    asset: String,
    /// Atomic units, decimal.
    min: String,
    max: String,
}

/// The bazaar catalog, filtered (404 when discovery is disabled).
#[utoipa::path(get, path = "/discovery/resources", tag = "discovery",
    params(DiscoveryParams),
    responses(
        (status = 200, description = "A page of resources", body = ResourceList),
        super::openapi::Refusals,
    ),
    security(("bearer" = ["discovery"]), ("apiKey" = ["discovery"]), ())
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(params): Query<DiscoveryParams>,
) -> Result<Json<ResourceList>, ApiError> {
    let catalog = catalog(&state)?;
    let query = checked(catalog.check_list(&params))?;
    let page = catalog.list(&query).await.map_err(fault)?;
    Ok(Json(ResourceList {
        x402_version: 2,
        items: items(&page)?,
        pagination: ListPagination {
            limit: page.limit,
            offset: page.offset,
            total: page.total,
        },
    }))
}

/// Full-text search of the catalog.
#[utoipa::path(get, path = "/discovery/search", tag = "discovery",
    params(DiscoveryParams),
    responses(
        (status = 200, description = "Matching resources", body = SearchResults),
        super::openapi::Refusals,
    ),
    security(("bearer" = ["discovery"]), ("apiKey" = ["discovery"]), ())
)]
pub(super) async fn search(
    State(state): State<AppState>,
    Query(params): Query<DiscoveryParams>,
) -> Result<Json<SearchResults>, ApiError> {
    let catalog = catalog(&state)?;
    let query = checked(catalog.check_search(&params))?;
    let page = catalog.search(&query).await.map_err(fault)?;
    // The cursor is the next page's offset; clients treat it as opaque.
    let cursor = page
        .more
        .then(|| page.offset.saturating_add(page.limit).to_string());
    Ok(Json(SearchResults {
        x402_version: 2,
        resources: items(&page)?,
        partial_results: false,
        pagination: SearchPagination {
            limit: page.limit,
            cursor,
        },
    }))
}

fn items(page: &Page) -> Result<Vec<DiscoveryResource>, ApiError> {
    page.rows.iter().map(item).collect()
}

fn item(row: &ListingRow) -> Result<DiscoveryResource, ApiError> {
    let corrupt =
        |e: serde_json::Error| ApiError::Internal(format!("corrupt catalog row {}: {e}", row.id));
    let accepts = row
        .accepts
        .iter()
        .map(|a| serde_json::from_str::<Value>(a).map_err(corrupt))
        .collect::<Result<Vec<_>, _>>()?;
    let tags = row
        .tags
        .as_deref()
        .map(|t| serde_json::from_str::<Vec<String>>(t).map_err(corrupt))
        .transpose()?;
    let bazaar = serde_json::from_str::<Value>(&row.bazaar).map_err(corrupt)?;
    Ok(DiscoveryResource {
        resource: row.resource.clone(),
        kind: row.kind.clone(),
        x402_version: row.x402_version,
        accepts,
        last_updated: rfc3339(row.last_seen_at),
        description: row.description.clone(),
        mime_type: row.mime_type.clone(),
        service_name: row.service_name.clone(),
        icon_url: row.icon_url.clone(),
        tags,
        extensions: Map::from_iter([(crate::discovery::EXTENSION.to_string(), bazaar)]),
        observed: observed(row),
    })
}

fn observed(row: &ListingRow) -> Observed {
    Observed {
        paid: row.paid,
        settled_payments_30d: row.settled_payments,
        payers_30d: row.payers,
        last_settled_at: row.last_settled_at.map(rfc3339),
        first_seen_at: rfc3339(row.first_seen_at),
        price_range: row
            .prices
            .iter()
            .map(|p| ObservedPrice {
                network: p.network.clone(),
                asset: p.asset.clone(),
                min: p.min.clone(),
                max: p.max.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::ingest::{MAX_BAZAAR_BYTES, MAX_REQUIREMENT_BYTES};
    use crate::discovery::query::MAX_LIMIT;
    use crate::ledger::PriceRange;
    use crate::ledger::catalog::{MAX_ACCEPTS, MAX_PRICE_RANGES};

    /// The largest row the bounds allow, rendered: a full page must stay under the 4 MiB the
    /// newer TS client reads (`MAX_DISCOVERY_RESPONSE_BYTES`).
    #[test]
    fn a_full_page_of_the_largest_items_fits_the_clients_read_limit() {
        // Every string made of characters JSON escapes as \u00XX would be 6× larger; the stored
        // bazaar and requirements are already serialised JSON, so their bounds hold as stored.
        let bazaar = serde_json::json!({ "info": {}, "schema": { "description": "x".repeat(MAX_BAZAAR_BYTES - 40) } });
        let requirement = serde_json::json!({ "extra": "r".repeat(MAX_REQUIREMENT_BYTES - 20) });
        let row = ListingRow {
            id: 1,
            resource: format!("https://{}", "h".repeat(2040)),
            kind: "http".into(),
            method: "GET".into(),
            tool_name: String::new(),
            x402_version: 2,
            description: Some("d".repeat(crate::discovery::metadata::MAX_DESCRIPTION)),
            mime_type: Some("m".repeat(128)),
            service_name: Some("s".repeat(32)),
            tags: Some(serde_json::to_string(&vec!["t".repeat(32); 5]).expect("json")),
            icon_url: Some(format!("https://{}", "i".repeat(2040))),
            bazaar: bazaar.to_string(),
            first_seen_at: 0,
            last_seen_at: 0,
            last_settled_at: Some(0),
            paid: true,
            settled_payments: i64::MAX,
            payers: i64::MAX,
            accepts: vec![requirement.to_string(); MAX_ACCEPTS as usize],
            prices: vec![
                PriceRange {
                    network: "n".repeat(64),
                    asset: "a".repeat(64),
                    min: "9".repeat(78),
                    max: "9".repeat(78),
                };
                MAX_PRICE_RANGES as usize
            ],
            score: 0.0,
        };
        let one = serde_json::to_string(&item(&row).expect("renders"))
            .expect("json")
            .len();
        let page = one * MAX_LIMIT as usize;
        assert!(
            page < 4 << 20,
            "a page of {MAX_LIMIT} could be {page} bytes"
        );
    }
}

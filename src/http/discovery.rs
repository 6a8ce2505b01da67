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
use serde_json::{Map, Value, json};

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

fn fault(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Busy => ApiError::Overloaded {
            endpoint: None,
            network: String::new(),
            retry_after: Duration::from_secs(1),
        },
        CatalogError::Ledger(e) => ApiError::Internal(e.to_string()),
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(params): Query<DiscoveryParams>,
) -> Result<Json<Value>, ApiError> {
    let catalog = catalog(&state)?;
    let query = checked(catalog.check_list(&params))?;
    let page = catalog.list(&query).await.map_err(fault)?;
    Ok(Json(json!({
        "x402Version": 2,
        "items": items(&page)?,
        "pagination": { "limit": page.limit, "offset": page.offset, "total": page.total },
    })))
}

pub(super) async fn search(
    State(state): State<AppState>,
    Query(params): Query<DiscoveryParams>,
) -> Result<Json<Value>, ApiError> {
    let catalog = catalog(&state)?;
    let query = checked(catalog.check_search(&params))?;
    let page = catalog.search(&query).await.map_err(fault)?;
    // The cursor is the next page's offset; clients treat it as opaque.
    let cursor = page
        .more
        .then(|| page.offset.saturating_add(page.limit).to_string());
    Ok(Json(json!({
        "x402Version": 2,
        "resources": items(&page)?,
        "partialResults": false,
        "pagination": { "limit": page.limit, "cursor": cursor },
    })))
}

fn items(page: &Page) -> Result<Vec<Value>, ApiError> {
    page.rows.iter().map(item).collect()
}

/// One `DiscoveryResource`: the spec's fields, the optional ones of the TS client type when
/// known, and `observed`.
fn item(row: &ListingRow) -> Result<Value, ApiError> {
    let parse = |text: &str| {
        serde_json::from_str::<Value>(text)
            .map_err(|e| ApiError::Internal(format!("corrupt catalog row {}: {e}", row.id)))
    };
    let accepts = row
        .accepts
        .iter()
        .map(|a| parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut item = Map::new();
    item.insert("resource".into(), json!(row.resource));
    item.insert("type".into(), json!(row.kind));
    item.insert("x402Version".into(), json!(row.x402_version));
    item.insert("accepts".into(), Value::Array(accepts));
    item.insert("lastUpdated".into(), json!(rfc3339(row.last_seen_at)));
    for (key, value) in [
        ("description", &row.description),
        ("mimeType", &row.mime_type),
        ("serviceName", &row.service_name),
        ("iconUrl", &row.icon_url),
    ] {
        if let Some(v) = value {
            item.insert(key.into(), json!(v));
        }
    }
    if let Some(tags) = &row.tags {
        item.insert("tags".into(), parse(tags)?);
    }
    item.insert(
        "extensions".into(),
        json!({ crate::discovery::EXTENSION: parse(&row.bazaar)? }),
    );
    item.insert("observed".into(), observed(row));
    Ok(Value::Object(item))
}

/// What the facilitator itself saw: whether (and how much, by how many payers) it was paid for
/// in the last 30 days, and the lowest and highest price per asset.
fn observed(row: &ListingRow) -> Value {
    json!({
        "paid": row.paid,
        "settledPayments30d": row.settled_payments,
        "payers30d": row.payers,
        "lastSettledAt": row.last_settled_at.map(rfc3339),
        "firstSeenAt": rfc3339(row.first_seen_at),
        "priceRange": row.prices.iter().map(|p| json!({
            "network": p.network, "asset": p.asset, "min": p.min, "max": p.max,
        })).collect::<Vec<_>>(),
    })
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
        let bazaar =
            json!({ "info": {}, "schema": { "description": "x".repeat(MAX_BAZAAR_BYTES - 40) } });
        let requirement = json!({ "extra": "r".repeat(MAX_REQUIREMENT_BYTES - 20) });
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
        let one = item(&row).expect("renders").to_string().len();
        let page = one * MAX_LIMIT as usize;
        assert!(
            page < 4 << 20,
            "a page of {MAX_LIMIT} could be {page} bytes"
        );
    }
}

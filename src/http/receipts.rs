//! Receipts for sellers: `GET /settlements/{transaction}` and a filtered, paginated
//! `GET /settlements` (by payer, payTo, network, state, time range) from the ledger.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::request_id::RequestId;
use crate::ledger::{ReceiptQuery, SettlementRecord, SettlementState};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListParams {
    payer: Option<String>,
    pay_to: Option<String>,
    network: Option<String>,
    /// Unix seconds, inclusive.
    from: Option<i64>,
    /// Unix seconds, exclusive.
    to: Option<i64>,
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.receipts_token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.expose().as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) async fn one(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    Path(transaction): Path<String>,
) -> Response {
    if !authorized(&state, &headers) {
        return ApiError::bad_request(
            &id.0,
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        )
        .into_response();
    }
    match state
        .facilitator
        .ledger()
        .by_transaction(&transaction)
        .await
    {
        Ok(Some(row)) => Json(receipt(&row)).into_response(),
        Ok(None) => ApiError::bad_request(
            &id.0,
            StatusCode::NOT_FOUND,
            "no settlement with that transaction",
        )
        .into_response(),
        Err(e) => ApiError::internal(&id.0, &e.to_string()).into_response(),
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !authorized(&state, &headers) {
        return ApiError::bad_request(
            &id.0,
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        )
        .into_response();
    }
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => {
            return ApiError::bad_request(&id.0, StatusCode::BAD_REQUEST, e.body_text())
                .into_response();
        }
    };
    let query = match to_query(p) {
        Ok(q) => q,
        Err(m) => return ApiError::bad_request(&id.0, StatusCode::BAD_REQUEST, m).into_response(),
    };
    match state.facilitator.ledger().list(&query).await {
        Ok(rows) => {
            let next = (rows.len() as i64 == query.limit)
                .then(|| {
                    rows.last()
                        .map(|r| format!("{}.{}", r.created_at, r.replay_key))
                })
                .flatten();
            Json(json!({ "items": rows.iter().map(receipt).collect::<Vec<_>>(), "nextCursor": next })).into_response()
        }
        Err(e) => ApiError::internal(&id.0, &e.to_string()).into_response(),
    }
}

fn to_query(p: ListParams) -> Result<ReceiptQuery, String> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
    }
    let state = p
        .state
        .map(|s| SettlementState::parse(&s).map_err(|_| format!("unknown state `{s}`")))
        .transpose()?;
    let before = match p.cursor {
        None => None,
        Some(c) => {
            let (at, key) = c.split_once('.').ok_or("malformed cursor")?;
            Some((
                at.parse::<i64>().map_err(|_| "malformed cursor")?,
                key.to_string(),
            ))
        }
    };
    let ms = |s: Option<i64>| s.map(|v| v.saturating_mul(1000));
    Ok(ReceiptQuery {
        payer: p.payer,
        pay_to: p.pay_to,
        network: p.network,
        from_ms: ms(p.from),
        to_ms: ms(p.to),
        state,
        before,
        limit,
    })
}

fn receipt(r: &SettlementRecord) -> Value {
    json!({
        "transaction": r.tx_id,
        "network": r.network,
        "scheme": r.scheme,
        "x402Version": r.x402_version,
        "state": r.state.as_str(),
        "payer": r.payer,
        "payTo": r.pay_to,
        "asset": r.asset,
        "amount": r.amount,
        "resource": r.resource_url,
        "paymentId": r.payment_id,
        "errorReason": r.error_reason,
        "signer": r.signer,
        "createdAt": rfc3339(r.created_at),
        "updatedAt": rfc3339(r.updated_at),
        "settledAt": r.settled_at.map(rfc3339),
    })
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (civil-from-days, H. Hinnant).
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_614_839_000), "2026-11-25T13:53:59.000Z");
    }

    #[test]
    fn rejects_bad_list_parameters() {
        let base = || ListParams {
            payer: None,
            pay_to: None,
            network: None,
            from: None,
            to: None,
            state: None,
            limit: None,
            cursor: None,
        };
        assert!(
            to_query(ListParams {
                limit: Some(0),
                ..base()
            })
            .is_err()
        );
        assert!(
            to_query(ListParams {
                limit: Some(101),
                ..base()
            })
            .is_err()
        );
        assert!(
            to_query(ListParams {
                state: Some("odd".into()),
                ..base()
            })
            .is_err()
        );
        assert!(
            to_query(ListParams {
                cursor: Some("x".into()),
                ..base()
            })
            .is_err()
        );
        let q = to_query(ListParams {
            cursor: Some("17.k".into()),
            from: Some(2),
            ..base()
        })
        .expect("valid");
        assert_eq!(
            (q.before, q.from_ms, q.limit),
            (Some((17, "k".into())), Some(2000), DEFAULT_LIMIT)
        );
    }
}

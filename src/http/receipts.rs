//! Receipts for sellers: `GET /settlements/{transaction}` and a filtered, paginated
//! `GET /settlements` (by payer, payTo, network, state, time range) from the ledger.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use axum::extract::Extension;

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::access::Caller;
use crate::ledger::{ReceiptQuery, SettlementRecord, SettlementState};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
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

/// Admission to the receipts: the bearer token when `server.receipts_token` is set, or an API
/// key with the `settlements` scope (checked by `http::access`).
pub(super) struct ReceiptsAuth;

/// Set by `http::access` when the request presented the legacy receipts token.
#[derive(Debug, Clone, Copy)]
pub(super) struct LegacyToken;

impl FromRequestParts<AppState> for ReceiptsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = &state.receipts_token else {
            return Ok(ReceiptsAuth);
        };
        let keyed = parts
            .extensions
            .get::<crate::access::Caller>()
            .is_some_and(|c| c.key_id.is_some());
        if keyed || parts.extensions.get::<LegacyToken>().is_some() {
            return Ok(ReceiptsAuth);
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) => {
                Ok(ReceiptsAuth)
            }
            _ => Err(ApiError::Unauthorized("a bearer token is required")),
        }
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// EVM hashes match in any case (explorers and checksummed copies differ); Solana signatures
/// are base58, where case matters, so only `0x` ids are folded.
fn normalize_tx(tx: &str) -> String {
    // `get`, not slicing: the path is the client's, and byte 2 may fall inside a character.
    if tx.len() > 2 && tx.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")) {
        tx.to_ascii_lowercase()
    } else {
        tx.to_string()
    }
}

/// One settlement by its transaction id.
#[utoipa::path(get, path = "/settlements/{transaction}", tag = "receipts",
    params(("transaction" = String, Path, description = "Transaction hash or signature")),
    responses(
        (status = 200, description = "The receipt", body = Receipt),
        super::openapi::Refusals,
    ),
    security(("bearer" = ["settlements"]), ("apiKey" = ["settlements"]), ())
)]
pub(super) async fn one(
    State(state): State<AppState>,
    _auth: ReceiptsAuth,
    caller: Option<Extension<Caller>>,
    Path(transaction): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    // A charge of 0 is settled with no transaction (its row holds `""`): nothing to look up.
    if transaction.is_empty() {
        return Err(ApiError::NotFound("no settlement with that transaction"));
    }
    match state
        .facilitator
        .ledger()
        .by_transaction(&normalize_tx(&transaction))
        .await
    {
        // A tenant's key sees only its own payees' receipts; others do not exist for it.
        Ok(Some(row)) if caller.as_deref().is_some_and(|c| !c.may_pay(&row.pay_to)) => {
            Err(ApiError::NotFound("no settlement with that transaction"))
        }
        Ok(Some(row)) => Ok(Json(receipt(&row))),
        Ok(None) => Err(ApiError::NotFound("no settlement with that transaction")),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Settlements, newest first, filtered and paginated.
#[utoipa::path(get, path = "/settlements", tag = "receipts",
    params(ListParams),
    responses(
        (status = 200, description = "A page of receipts", body = ReceiptPage),
        super::openapi::Refusals,
    ),
    security(("bearer" = ["settlements"]), ("apiKey" = ["settlements"]), ())
)]
pub(super) async fn list(
    State(state): State<AppState>,
    _auth: ReceiptsAuth,
    caller: Option<Extension<Caller>>,
    Query(params): Query<ListParams>,
) -> Result<Json<ReceiptPage>, ApiError> {
    let mut query = to_query(params)
        .map_err(|m| ApiError::Unreadable(axum::http::StatusCode::BAD_REQUEST, m))?;
    // A tenant's key lists one of its payees: the one it names, or its only one.
    if let Some(caller) = caller.as_deref()
        && let Some(list) = caller.payees()
    {
        match (&query.pay_to, list) {
            (Some(asked), _) if caller.may_pay(asked) => {}
            (None, [only]) => query.pay_to = Some(only.clone()),
            _ => {
                return Err(ApiError::Denied {
                    forbidden: true,
                    endpoint: None,
                    message: "this API key lists receipts of its own payees: name one with payTo"
                        .into(),
                });
            }
        }
    }
    let rows = state
        .facilitator
        .ledger()
        .list(&query)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let next = (rows.len() as i64 == query.limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.created_at, r.replay_key))
        })
        .flatten();
    Ok(Json(ReceiptPage {
        items: rows.iter().map(receipt).collect(),
        next_cursor: next,
    }))
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

/// One settlement as a seller sees it (`GET /settlements/{transaction}`, items of the list).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Receipt {
    /// The transaction id; `null` until one was sent.
    transaction: Option<String>,
    network: String,
    scheme: String,
    x402_version: u8,
    /// `pending`, `submitted`, `settled`, `failed`, ... (the ledger's states).
    state: String,
    payer: String,
    pay_to: String,
    asset: String,
    /// What the payment moves (for `upto`, the seller's charge).
    amount: String,
    /// `upto`: the signed maximum beside the charge; `null` for other schemes.
    max_amount: Option<String>,
    resource: Option<String>,
    payment_id: Option<String>,
    error_reason: Option<String>,
    signer: Option<String>,
    /// RFC 3339 UTC.
    created_at: String,
    updated_at: String,
    settled_at: Option<String>,
}

/// `GET /settlements`: a page of receipts, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReceiptPage {
    items: Vec<Receipt>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

fn receipt(r: &SettlementRecord) -> Receipt {
    Receipt {
        transaction: r.tx_id.clone(),
        network: r.network.clone(),
        scheme: r.scheme.clone(),
        x402_version: r.x402_version,
        state: r.state.as_str().to_string(),
        payer: r.payer.clone(),
        pay_to: r.pay_to.clone(),
        asset: r.asset.clone(),
        amount: r.amount.clone(),
        max_amount: r.max_amount.clone(),
        resource: r.resource_url.clone(),
        payment_id: r.payment_id.clone(),
        error_reason: r.error_reason.clone(),
        signer: r.signer.clone(),
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
        settled_at: r.settled_at.map(rfc3339),
    }
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (civil-from-days, H. Hinnant).
pub(super) fn rfc3339(ms: i64) -> String {
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

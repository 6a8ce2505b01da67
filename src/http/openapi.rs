//! `GET /openapi.json`: the API described from the handlers' own types (utoipa derives their
//! schemas; each handler carries its `#[utoipa::path]`), plus the error bodies `error.rs`
//! writes, which are built as JSON there and so are described here, next to the responses
//! that carry them. Open to everyone (`http::access`): a client reads it before it has a key.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, response::Response as Answer};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::protocol::{FacilitatorRequestV1, FacilitatorRequestV2};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "x402 facilitator",
        description = "Verifies and settles x402 payments (v1 and v2) and keeps a ledger of them. \
            Business outcomes (an invalid payment, a failed settle) are 200 answers with a reason; \
            error statuses are for requests we cannot read, refused credentials, and our faults. \
            Every error body carries `errorId`, the request id of the logs."
    ),
    paths(
        super::payment::verify,
        super::payment::settle,
        super::supported,
        super::receipts::list,
        super::receipts::one,
        super::discovery::list,
        super::discovery::search,
        super::sessions::verify,
        super::sessions::entitlement,
        super::health,
        super::ready,
        super::metrics,
        document,
    ),
    components(schemas(ErrorBody, VerifyFault, SettleFault)),
    modifiers(&KeySchemes)
)]
struct ApiDoc;

/// The two ways of presenting a key (`http::access::presented`).
struct KeySchemes;

impl Modify for KeySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "`Authorization: Bearer <key>`, what the SDKs' `createAuthHeaders` sends. Needed \
             once any key exists or `auth.required` is set; the scope named on each operation."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same key in `X-API-Key`, for clients that cannot set `Authorization`.",
            ))),
        );
    }
}

/// The document as served, built once.
pub fn json() -> &'static Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| {
        // A derived document of our own types always serialises.
        Bytes::from(ApiDoc::openapi().to_json().unwrap_or_default())
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI document", body = Object)),
    security(())
)]
pub(super) async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json().clone()).into_response()
}

/// Body of `POST /verify` and `POST /settle`, dispatched on `paymentPayload.x402Version`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only: bodies are decoded by `protocol::parse_request`
pub(super) enum PaymentRequestBody {
    V2(FacilitatorRequestV2),
    V1(FacilitatorRequestV1),
}

/// The error body of every endpoint but the fault answers of `/verify` and `/settle`
/// (`error.rs`, `plain` and `shaped(None, ..)`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only
pub(super) struct ErrorBody {
    /// What went wrong, for a person.
    error: String,
    /// The request id; the logs show the same.
    error_id: String,
    /// A reason string, on 429 and 503 (`rate_limited`, `facilitator_overloaded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// A `/verify` refusal or fault (429, 503, 5xx): in the shape of a verify answer, so that SDK
/// clients surface a typed error.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only
pub(super) struct VerifyFault {
    /// Always `false`.
    is_valid: bool,
    invalid_reason: String,
    invalid_message: String,
    error_id: String,
}

/// A `/settle` refusal or fault (409, 429, 503, 5xx), in the shape of a settle answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only
pub(super) struct SettleFault {
    /// Always `false`.
    success: bool,
    error_reason: String,
    error_message: String,
    /// Empty unless a transaction was sent.
    transaction: String,
    network: String,
    error_id: String,
}

fn answers(list: &[(&str, &str, &str)]) -> BTreeMap<String, RefOr<Answer>> {
    list.iter()
        .map(|(status, schema, description)| {
            let mut answer = Answer::new(*description);
            answer.content.insert(
                "application/json".into(),
                RefOr::T(Content::new(Some(Ref::from_schema_name(*schema)))),
            );
            (status.to_string(), RefOr::T(answer))
        })
        .collect()
}

const UNAUTHORIZED: (&str, &str, &str) = (
    "401",
    "ErrorBody",
    "No key, or an unknown or revoked one (with `WWW-Authenticate: Bearer`)",
);
const FORBIDDEN: (&str, &str, &str) = ("403", "ErrorBody", "The key lacks this endpoint's scope");
const NOT_FOUND: (&str, &str, &str) = (
    "404",
    "ErrorBody",
    "No such endpoint or record, or the feature is disabled",
);
const NOT_ALLOWED: (&str, &str, &str) = ("405", "ErrorBody", "Another method on this path");
const UNREADABLE: (&str, &str, &str) = ("400", "ErrorBody", "A body or query we cannot read");

/// The error answers of endpoints other than `/verify` and `/settle`.
pub(super) struct Refusals;

impl utoipa::IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<Answer>> {
        answers(&[
            UNREADABLE,
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            NOT_ALLOWED,
            (
                "429",
                "ErrorBody",
                "Over a rate limit; retry after `Retry-After`",
            ),
            ("500", "ErrorBody", "A fault of ours"),
            (
                "503",
                "ErrorBody",
                "Overloaded, out of time, or the ledger unavailable; retry after `Retry-After`",
            ),
        ])
    }
}

/// The error answers of a payment endpoint: unreadable requests are plain; the gate's refusals
/// and our faults keep the endpoint's answer shape (the SDK clients raise typed errors).
fn payment_answers(fault: &str) -> BTreeMap<String, RefOr<Answer>> {
    answers(&[
        (
            "400",
            "ErrorBody",
            "Not a facilitator request (or 413: too large)",
        ),
        (
            "401",
            fault,
            "No key, or an unknown or revoked one (with `WWW-Authenticate: Bearer`); reason `unauthorized`",
        ),
        (
            "403",
            fault,
            "The key lacks this endpoint's scope; reason `forbidden`",
        ),
        NOT_FOUND,
        NOT_ALLOWED,
        ("409", fault, "The payment identifier names another payment"),
        ("429", fault, "Over a rate limit; retry after `Retry-After`"),
        ("500", fault, "A fault of ours"),
        ("502", fault, "The chain RPC failed"),
        (
            "503",
            fault,
            "Overloaded, no usable signer or ledger, or out of time; retry after `Retry-After`",
        ),
    ])
}

pub(super) struct VerifyRefusals;

impl utoipa::IntoResponses for VerifyRefusals {
    fn responses() -> BTreeMap<String, RefOr<Answer>> {
        payment_answers("VerifyFault")
    }
}

pub(super) struct SettleRefusals;

impl utoipa::IntoResponses for SettleRefusals {
    fn responses() -> BTreeMap<String, RefOr<Answer>> {
        payment_answers("SettleFault")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_every_route_and_the_key_schemes() {
        let doc: serde_json::Value = serde_json::from_slice(super::json()).expect("JSON");
        for path in [
            "/verify",
            "/settle",
            "/supported",
            "/settlements",
            "/settlements/{transaction}",
            "/discovery/resources",
            "/discovery/search",
            "/sessions/verify",
            "/sessions/entitlement",
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is not documented");
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    }
}

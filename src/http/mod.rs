//! The HTTP surface: router, request ids and per-request spans, body limit, timeout; one file
//! per resource (payments, receipts, discovery).

mod discovery;
pub mod error;
mod extract;
mod payment;
mod receipts;
mod request_id;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::task::TaskTracker;

use crate::facilitator::Facilitator;

pub use request_id::RequestId;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub facilitator: Arc<Facilitator>,
    /// `/supported` never changes while running, so it is serialised once.
    pub supported_json: Bytes,
    /// Settles run as tracked tasks: a client that hangs up does not cut one off half-way, and
    /// shutdown waits for them.
    pub settles: TaskTracker,
    /// When set, receipts require it as a bearer token.
    pub receipts_token: Option<crate::config::Secret>,
    /// Settles in flight on this replica, at most `server.max_concurrent_settles`.
    pub settle_slots: Arc<tokio::sync::Semaphore>,
    /// Verifies in flight (each may cost several RPC calls), at most
    /// `server.max_concurrent_verifies`.
    pub verify_slots: Arc<tokio::sync::Semaphore>,
    /// The server's own bound on a request (`server.request_timeout_ms`).
    pub request_timeout: Duration,
    /// The bazaar catalog; `None` when discovery is disabled.
    pub discovery: Option<Arc<crate::discovery::Catalog>>,
}

pub fn router(state: AppState, body_limit: usize, request_timeout: Duration) -> Router {
    Router::new()
        .route("/verify", post(payment::verify))
        .route("/settle", post(payment::settle))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/settlements", get(receipts::list))
        .route("/settlements/{transaction}", get(receipts::one))
        .route("/discovery/resources", get(discovery::list))
        .route("/discovery/search", get(discovery::search))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            request_id::middleware(req, next, request_timeout)
        }))
        .with_state(state)
}

async fn supported(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.supported_json.clone(),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.facilitator.metrics.render();
    let leases = state.facilitator.leases();
    text.push_str(&format!(
        "# HELP x402_replicas Live replicas on this ledger, as this one counts them.\n\
         # TYPE x402_replicas gauge\nx402_replicas {}\n\
         # HELP x402_signer_lease Signer leases this replica holds (2 while handing one over).\n\
         # TYPE x402_signer_lease gauge\n",
        leases.replicas()
    ));
    for (signer, (_, draining)) in leases.held() {
        text.push_str(&format!(
            "x402_signer_lease{{signer=\"{signer}\"}} {}\n",
            if draining { 2 } else { 1 }
        ));
    }
    if let Some(catalog) = &state.discovery {
        text.push_str(&catalog.metrics.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Readiness: the ledger answers; with the replica's view of its share of the signer keys
/// (a replica holding none still serves: it hands its settles to one that does).
async fn ready(State(state): State<AppState>) -> Response {
    let leases = state.facilitator.leases();
    let signers: serde_json::Map<String, serde_json::Value> = leases
        .held()
        .into_iter()
        .map(|(k, (fence, draining))| (k, json!({ "fence": fence, "draining": draining })))
        .collect();
    let ledger = state.facilitator.ledger().ping().await;
    let body = json!({
        "ready": ledger.is_ok(),
        "checks": { "ledger": if ledger.is_ok() { "ok" } else { "unreachable" } },
        "replicas": leases.replicas(),
        "signers": signers,
        "handoffs": {
            "out": state.facilitator.metrics.handed_off.load(std::sync::atomic::Ordering::Relaxed),
            "in": state.facilitator.metrics.taken_over.load(std::sync::atomic::Ordering::Relaxed),
        },
    });
    let status = if ledger.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    match state.facilitator.ledger().ping().await {
        Ok(()) => axum::Json(json!({ "status": "ok", "ledger": "ok" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: ledger unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "degraded", "ledger": "unreachable" })),
            )
                .into_response()
        }
    }
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("no such endpoint; see GET /supported")
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::MethodNotAllowed
}

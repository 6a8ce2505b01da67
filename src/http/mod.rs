//! The HTTP surface: router, request ids and per-request spans, the access gate (keys, rate
//! limits), body limit, timeout; one file per resource (payments, receipts, discovery,
//! sessions), and the operator console (`console/`).

mod access;
mod console;
mod discovery;
pub mod error;
mod extract;
mod openapi;
mod payment;
mod receipts;
mod request_id;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

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
    /// Serve the operator console at `/console`.
    pub console_enabled: bool,
    /// The console's admin secret (`console.token`); see `console::admin_allowed`.
    pub console_token: Option<crate::config::Secret>,
    /// Sign-in proofs and entitlements; `None` when sessions are disabled.
    pub sessions: Option<Arc<crate::sessions::Sessions>>,
    /// API keys and rate limits (`http::access`).
    pub access: Arc<crate::access::Access>,
}

pub fn router(state: AppState, body_limit: usize, request_timeout: Duration) -> Router {
    let mut routes = Router::new();
    if state.console_enabled {
        routes = routes.nest("/console", console::router());
    }
    routes
        .route("/verify", post(payment::verify))
        .route("/settle", post(payment::settle))
        .route("/supported", get(supported))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::document))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/settlements", get(receipts::list))
        .route("/settlements/{transaction}", get(receipts::one))
        .route("/discovery/resources", get(discovery::list))
        .route("/discovery/search", get(discovery::search))
        .route("/sessions/verify", post(sessions::verify))
        .route("/sessions/entitlement", get(sessions::entitlement))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::middleware,
        ))
        .layer(axum::middleware::from_fn(move |req, next| {
            request_id::middleware(req, next, request_timeout)
        }))
        .with_state(state)
}

#[utoipa::path(get, path = "/supported", tag = "payments",
    responses(
        (status = 200, description = "The payment kinds this facilitator settles, and its signers",
            body = crate::protocol::SupportedResponse),
        openapi::Refusals,
    ),
    security(("bearer" = ["supported"]), ("apiKey" = ["supported"]), ())
)]
async fn supported(State(state): State<AppState>) -> Response {
    let board = &state.facilitator.health;
    let all = state.facilitator.supported();
    // The cached bytes unless a network is down right now (then it is left out).
    let body = if all.kinds.iter().all(|k| board.serving(&k.network)) {
        state.supported_json.clone()
    } else {
        match serde_json::to_vec(&board.filter(all)) {
            Ok(v) => Bytes::from(v),
            Err(_) => state.supported_json.clone(),
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format",
            content_type = "text/plain", body = String),
        openapi::Refusals,
    ),
    security(("bearer" = ["admin"]), ("apiKey" = ["admin"]), ())
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.facilitator.metrics.render();
    text.push_str(&crate::facilitator::health::render(
        &state.facilitator.health,
    ));
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

/// `GET /ready` answer (503 with the same body when not ready).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Readiness {
    ready: bool,
    checks: ReadyChecks,
    /// Live replicas on this ledger, as this one counts them.
    replicas: i64,
    /// The signer leases this replica holds, by signer address.
    signers: std::collections::BTreeMap<String, SignerLease>,
    handoffs: Handoffs,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReadyChecks {
    /// `ok` or `unreachable`.
    ledger: &'static str,
    /// Per served network (CAIP-2), from the last health probe; empty before the first.
    networks: std::collections::BTreeMap<String, NetworkCheck>,
}

/// One network's checks: each `ok` or `failing`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NetworkCheck {
    /// At least one RPC URL answers.
    rpc: &'static str,
    /// At least one signer has gas above the threshold.
    gas: &'static str,
    /// Some replica holds a lease on one of its keys.
    lease: &'static str,
    /// Signers under the low-balance threshold.
    low_balance: Vec<String>,
    /// Advertised in `/supported` right now.
    serving: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SignerLease {
    fence: i64,
    /// Being handed over to another replica.
    draining: bool,
}

/// Settles handed to the replica holding the signer, and taken from others.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Handoffs {
    out: u64,
    #[serde(rename = "in")]
    taken_in: u64,
}

/// `GET /health` answer (503 with `degraded` when the ledger does not answer).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    /// `ok` or `unreachable`.
    ledger: &'static str,
}

/// Readiness: the ledger answers; with the replica's view of its share of the signer keys
/// (a replica holding none still serves: it hands its settles to one that does).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: the ledger does not answer", body = Readiness),
        openapi::Refusals,
    ),
    security(("bearer" = ["admin"]), ("apiKey" = ["admin"]), ())
)]
async fn ready(State(state): State<AppState>) -> Response {
    let leases = state.facilitator.leases();
    let signers = leases
        .held()
        .into_iter()
        .map(|(k, (fence, draining))| (k, SignerLease { fence, draining }))
        .collect();
    let ledger = ping(&state).await;
    let metrics = &state.facilitator.metrics;
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    let networks: std::collections::BTreeMap<String, NetworkCheck> = state
        .facilitator
        .health
        .networks()
        .into_iter()
        .map(|(n, h)| {
            let check = NetworkCheck {
                rpc: word(h.rpc),
                gas: word(h.gas),
                lease: word(h.lease),
                serving: h.serving(),
                low_balance: h.low_balance,
            };
            (n, check)
        })
        .collect();
    let ready = ledger.is_ok() && networks.values().all(|n| n.serving);
    let body = Readiness {
        ready,
        checks: ReadyChecks {
            ledger: if ledger.is_ok() { "ok" } else { "unreachable" },
            networks,
        },
        replicas: leases.replicas(),
        signers,
        handoffs: Handoffs {
            out: metrics
                .handed_off
                .load(std::sync::atomic::Ordering::Relaxed),
            taken_in: metrics
                .taken_over
                .load(std::sync::atomic::Ordering::Relaxed),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Liveness: open to everyone, even when keys are required.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Alive, the ledger answers", body = Health),
        (status = 503, description = "The ledger does not answer", body = Health),
    ),
    security(())
)]
async fn health(State(state): State<AppState>) -> Response {
    match ping(&state).await {
        Ok(()) => axum::Json(Health {
            status: "ok",
            ledger: "ok",
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: ledger unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(Health {
                    status: "degraded",
                    ledger: "unreachable",
                }),
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

/// The ledger's answer to a trivial query, bounded: a probe that waits for a pool connection
/// longer than a load balancer waits for `/ready` would be no answer at all.
async fn ping(state: &AppState) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), state.facilitator.ledger().ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".into()),
    }
}

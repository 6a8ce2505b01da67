//! The gate every request passes before its handler: the client's rate limit (by IP, before
//! anything costs a database read), then its API key and the scope the endpoint needs, then
//! the key's own rate limit. The authenticated [`Caller`] travels to the handler as a request
//! extension. Also times every answer for the per-endpoint latency histogram.
//!
//! Auth is on when `auth.required` is set or any key was ever created (docs/access.md).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, Endpoint};
use crate::access::keys::TokenHash;
use crate::access::{Caller, Class, Scope};

/// Headers that carry a key: what `createAuthHeaders` sends, and the common alternative.
const X_API_KEY: &str = "x-api-key";

/// What an endpoint needs: the scope (`None` = open to anyone) and its rate-limit class, and
/// the name its latency is filed under (bounded: unknown paths are `other`).
fn route(path: &str) -> (Option<Scope>, Class, &'static str) {
    match path {
        "/health" => (None, Class::Other, "health"),
        "/openapi.json" => (None, Class::Other, "openapi"),
        "/verify" => (Some(Scope::Verify), Class::Verify, "verify"),
        "/settle" => (Some(Scope::Settle), Class::Settle, "settle"),
        "/supported" => (Some(Scope::Supported), Class::Other, "supported"),
        "/ready" => (Some(Scope::Admin), Class::Other, "ready"),
        "/metrics" => (Some(Scope::Admin), Class::Other, "metrics"),
        p if p == "/settlements" || p.starts_with("/settlements/") => {
            (Some(Scope::Settlements), Class::Other, "settlements")
        }
        p if p.starts_with("/discovery/") => (Some(Scope::Discovery), Class::Other, "discovery"),
        p if p.starts_with("/sessions/") => (Some(Scope::Verify), Class::Verify, "sessions"),
        p if p == "/console" || p.starts_with("/console/") => {
            (Some(Scope::Admin), Class::Other, "console")
        }
        _ => (Some(Scope::Supported), Class::Other, "other"),
    }
}

fn endpoint(path: &str) -> Option<Endpoint> {
    match path {
        "/verify" => Some(Endpoint::Verify),
        "/settle" => Some(Endpoint::Settle),
        _ => None,
    }
}

/// The key a request presents, from `Authorization: Bearer` or `X-API-Key`.
pub(super) fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get(X_API_KEY).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub(super) async fn middleware(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let (scope, class, name) = route(&path);
    let answer = gate(&state, &mut req, &path, scope, class).await;
    let response = match answer {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    state
        .facilitator
        .metrics
        .observe_latency(name, started.elapsed());
    response
}

async fn gate(
    state: &AppState,
    req: &mut Request,
    path: &str,
    scope: Option<Scope>,
    class: Class,
) -> Result<(), ApiError> {
    let Some(scope) = scope else {
        return Ok(());
    };
    let access = &state.access;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // Every X-Forwarded-For line, in order: a proxy may add its own line instead of appending.
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    let ip = access.limits.client_ip(peer, forwarded.as_deref());
    let limited = |state: &AppState, wait, which: crate::access::Limited| {
        state
            .facilitator
            .metrics
            .count_refusal(&format!("rate_limited_{}", which.as_str()));
        ApiError::RateLimited {
            endpoint: endpoint(path),
            retry_after: wait,
        }
    };
    let denied = |state: &AppState, reason: &'static str, forbidden: bool, message: String| {
        state.facilitator.metrics.count_refusal(reason);
        ApiError::Denied {
            forbidden,
            endpoint: endpoint(path),
            message,
        }
    };
    let token = presented(req.headers()).map(str::to_string);
    // A key the cache has seen live is limited as a key, not by its IP (a seller's backend
    // behind one address must not share the IP budget with strangers there), also once its
    // entry is stale: otherwise every expiry would charge the seller's address. Anything else
    // is limited by IP before it may cost a ledger read.
    let hash = token.as_deref().map(TokenHash::of);
    let seen = hash.as_ref().and_then(|h| access.keys.peek(h));
    if !seen.as_ref().is_some_and(|(key, _)| key.is_some()) {
        access
            .limits
            .check_ip(class, ip)
            .map_err(|(wait, which)| limited(state, wait, which))?;
    }
    let on = access.required
        || access
            .keys
            .any_created()
            .await
            .map_err(|e| ApiError::LedgerUnavailable {
                endpoint: endpoint(path),
                detail: format!("cannot read API keys: {e}"),
            })?;
    // The legacy receipts token still opens the receipts, with or without keys.
    if scope == Scope::Settlements
        && let (Some(legacy), Some(given)) = (&access.receipts_token, &token)
        && super::receipts::constant_time_eq(given.as_bytes(), legacy.expose().as_bytes())
    {
        req.extensions_mut().insert(Caller::anonymous());
        req.extensions_mut().insert(super::receipts::LegacyToken);
        return Ok(());
    }
    if !on {
        req.extensions_mut().insert(Caller::anonymous());
        return Ok(());
    }
    let Some(hash) = hash else {
        return Err(denied(
            state,
            "auth_missing_key",
            false,
            "an API key is required: send Authorization: Bearer <key> (or X-API-Key)".into(),
        ));
    };
    let key = match seen {
        Some((key, true)) => key,
        _ => access
            .keys
            .lookup(&hash)
            .await
            .map_err(|e| ApiError::LedgerUnavailable {
                endpoint: endpoint(path),
                detail: format!("cannot read API keys: {e}"),
            })?,
    };
    let Some(key) = key else {
        return Err(denied(
            state,
            "auth_unknown_key",
            false,
            "unknown or revoked API key".into(),
        ));
    };
    let caller = Caller::from_key(&key);
    if !caller.scopes.contains(&scope) {
        return Err(denied(
            state,
            "auth_missing_scope",
            true,
            format!("this API key lacks the `{scope}` scope"),
        ));
    }
    if let Some(id) = &caller.key_id {
        access
            .limits
            .check_key(class, id, caller.rate_per_second)
            .map_err(|(wait, which)| limited(state, wait, which))?;
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

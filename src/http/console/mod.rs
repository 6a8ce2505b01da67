//! The operator console: server-rendered HTML pages at `/console` (settlements, networks,
//! volume, the discovery catalog), their stylesheet and a few hundred bytes of progressive
//! enhancement. Off unless `console.enabled`. Every figure comes from the ledger or a live probe
//! made for the request; nothing is cached.
//!
//! Templates are askama's (`templates/console/`), compiled and type-checked with the crate and
//! HTML-escaped by default, so a payer-controlled string (a resource URL, a description) can
//! never become markup. Admission is decided in one place, [`admin_allowed`].

mod chart;
mod pages;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;
use crate::access::{Caller, Scope};

/// The cookie the sign-in form sets (HttpOnly, SameSite=Strict, path `/console`).
const COOKIE: &str = "x402_console";
const STYLESHEET: &str = include_str!("../../../templates/console/console.css");
const SCRIPT: &str = include_str!("../../../templates/console/console.js");

/// The console's routes, nested under `/console` by the main router when enabled.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/settlements") }))
        .route("/settlements", get(pages::settlements))
        .route("/networks", get(pages::networks))
        .route("/volume", get(pages::volume))
        .route("/discovery", get(pages::discovery))
        .route("/login", get(pages::login_form).post(login))
        .route("/assets/console.css", get(|| asset(STYLESHEET, "text/css")))
        .route(
            "/assets/console.js",
            get(|| asset(SCRIPT, "text/javascript")),
        )
}

/// Whether this request may see the console. The one admission decision of the console: an API
/// key with the `admin` scope (the access gate, `http/access.rs`, checked the scope before the
/// handler ran and left the key's [`Caller`]), else the `console.token` secret as a bearer token
/// or the sign-in cookie (no token configured: everyone the gate let through).
pub(super) fn admin_allowed(
    state: &AppState,
    headers: &HeaderMap,
    caller: Option<&Caller>,
) -> bool {
    if caller.is_some_and(|c| c.key_id.is_some() && c.scopes.contains(&Scope::Admin)) {
        return true;
    }
    // An empty token (compose's `${X402_CONSOLE_TOKEN:-}`) counts as unset.
    let Some(token) = state
        .console_token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
    else {
        return true;
    };
    let expected = token.expose().as_bytes();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .next();
    [bearer, cookie]
        .into_iter()
        .flatten()
        .any(|given| super::receipts::constant_time_eq(given.as_bytes(), expected))
}

/// Refuses with 401 (JSON, like every error) unless [`admin_allowed`].
fn admit(
    state: &AppState,
    headers: &HeaderMap,
    caller: Option<&axum::Extension<Caller>>,
) -> Result<(), ApiError> {
    if admin_allowed(state, headers, caller.map(|c| &c.0)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the console requires the admin credential (bearer token, or sign in at /console/login)",
        ))
    }
}

/// An HTML page with the headers every console page carries: no caching (figures are live), a
/// policy that allows only our own stylesheet and script, and no framing.
fn html(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn render(template: &impl askama::Template) -> Result<Response, ApiError> {
    template
        .render()
        .map(html)
        .map_err(|e| ApiError::Internal(format!("console template: {e}")))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// `POST /console/login` (form field `token`): sets the cookie when the token is right.
async fn login(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let given = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {given}"))
            .map_err(|_| ApiError::Unauthorized("that is not the console token"))?,
    );
    admit(&state, &headers, None)
        .map_err(|_| ApiError::Unauthorized("that is not the console token"))?;
    let cookie = format!("{COOKIE}={given}; Path=/console; HttpOnly; SameSite=Strict");
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::Unauthorized("that is not the console token"))?;
    let mut response = Redirect::to("/console/settlements").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

//! Request ids and the per-request span (house style §10): every log line of a request carries
//! its id, and every fault answer names it as `errorId`.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, field::Empty, info};

use super::error::ApiError;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub(super) async fn middleware(mut req: Request, next: Next, timeout: Duration) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        network = Empty,
        scheme = Empty,
        payer = Empty,
    );
    let started = Instant::now();
    let run = async {
        let mut response = match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => {
                ApiError::bad_request(&id, StatusCode::SERVICE_UNAVAILABLE, "request timed out")
                    .into_response()
            }
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        info!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "done"
        );
        response
    };
    run.instrument(span).await
}

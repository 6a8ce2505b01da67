//! Request ids and the per-request span (house style §10): every log line of a request carries
//! its id, and every error answer names it as `errorId` (the middleware writes parked error
//! bodies, see [`super::error`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, debug, field::Empty};

use super::error::{ApiError, Endpoint, ParkedError, render};

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// When the request arrived: the deadline of the work it starts counts from here.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// A process-unique id: a random 64-bit prefix drawn once per process (so ids from different
/// processes and restarts differ) and a counter. No syscall per request, unlike a fresh UUIDv4.
fn next_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        "/verify" => Some(Endpoint::Verify),
        "/settle" => Some(Endpoint::Settle),
        _ => None,
    }
}

pub(super) async fn middleware(mut req: Request, next: Next, timeout: Duration) -> Response {
    let started = Instant::now();
    let id = next_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(Arrived(started));
    let endpoint = endpoint_of(req.uri().path());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        network = Empty,
        scheme = Empty,
        payer = Empty,
    );
    let run = async {
        let mut response = match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::TimedOut(endpoint).into_response(),
        };
        if let Some(parked) = response.extensions_mut().remove::<ParkedError>() {
            render(&mut response, parked, &id);
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        // The access log is at debug: at info, one stderr write per request would cost more
        // CPU than answering /supported. Faults and settle outcomes are logged at warn/info.
        debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "done"
        );
        response
    };
    run.instrument(span).await
}

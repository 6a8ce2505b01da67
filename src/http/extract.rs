//! Extractors: the payment body of `/verify` and `/settle`, read once into a typed request, and
//! rejections turned into [`ApiError`]s so that every refusal is JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::protocol::{PaymentRequest, RequestError, parse_request};
use crate::scheme::Rejection;

/// The body of `/verify` or `/settle`: a request, or a readable body whose payment is invalid
/// (a business outcome, answered 200 with the reason and the network the body named). A body
/// that is no facilitator request at all is rejected with 400 or 413.
pub struct PaymentBody(pub Result<PaymentRequest, (Rejection, String)>);

impl<S: Send + Sync> FromRequest<S> for PaymentBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::Unreadable(r.status(), r.body_text()))?;
        match parse_request(&body) {
            Ok(request) => Ok(PaymentBody(Ok(request))),
            Err(RequestError::Malformed(m)) => {
                Err(ApiError::Unreadable(StatusCode::BAD_REQUEST, m))
            }
            Err(RequestError::Invalid {
                reason,
                message,
                network,
            }) => Ok(PaymentBody(Err((
                Rejection::new(reason).with_message(message),
                network,
            )))),
        }
    }
}

/// `axum::extract::Path`, with its rejection as a JSON 400.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::Unreadable(StatusCode::BAD_REQUEST, r.body_text()))
    }
}

/// `axum::extract::Query`, with its rejection as a JSON 400.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| ApiError::Unreadable(StatusCode::BAD_REQUEST, r.body_text()))
    }
}

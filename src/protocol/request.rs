//! Decoding of a `/verify` or `/settle` body into a version-tagged request.
//!
//! Two kinds of failure: a body we cannot read at all (not JSON, or no `paymentPayload` /
//! `paymentRequirements` object) is a transport error, answered 400; a body we can read but whose
//! payment is malformed is a business outcome, answered 200 with a reason (digest §2.6).

use serde_json::{Map, Value};

use super::reason;
use super::types::*;

/// A decoded facilitator request, dispatched on `paymentPayload.x402Version` as the reference
/// facilitators do (digest §2.1).
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentRequest {
    V1(FacilitatorRequestV1),
    V2(FacilitatorRequestV2),
}

/// Why a body could not become a [`PaymentRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// Not JSON, or the top-level fields are missing: HTTP 400.
    Malformed(String),
    /// Readable, but the payment itself is invalid: HTTP 200 with this reason.
    Invalid {
        reason: &'static str,
        message: String,
        network: String,
    },
}

pub fn parse_request(body: &[u8]) -> Result<PaymentRequest, RequestError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::Malformed(format!("body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(RequestError::Malformed("body must be a JSON object".into()));
    };
    let (Some(Value::Object(payload)), Some(Value::Object(requirements))) = (
        top.remove("paymentPayload"),
        top.remove("paymentRequirements"),
    ) else {
        return Err(RequestError::Malformed(
            "paymentPayload and paymentRequirements must both be JSON objects".into(),
        ));
    };
    let network = best_effort_network(&payload, &requirements);
    let invalid = |reason: &'static str, message: String| RequestError::Invalid {
        reason,
        message,
        network: network.clone(),
    };
    let version = payload.get("x402Version").and_then(Value::as_u64);
    if let Some(top_version) = top.get("x402Version").filter(|v| !v.is_null())
        && top_version.as_u64() != version
    {
        return Err(invalid(
            reason::INVALID_X402_VERSION,
            "x402Version differs from paymentPayload.x402Version".into(),
        ));
    }
    let top_version = top
        .get("x402Version")
        .and_then(Value::as_u64)
        .map(|v| v as u8);
    match version {
        Some(1) => {
            let payment_payload = serde_json::from_value(Value::Object(payload))
                .map_err(|e| invalid(reason::INVALID_PAYLOAD, e.to_string()))?;
            let payment_requirements = serde_json::from_value(Value::Object(requirements))
                .map_err(|e| invalid(reason::INVALID_PAYMENT_REQUIREMENTS, e.to_string()))?;
            Ok(PaymentRequest::V1(FacilitatorRequestV1 {
                x402_version: top_version,
                payment_payload,
                payment_requirements,
            }))
        }
        Some(2) => {
            let payment_payload = serde_json::from_value(Value::Object(payload))
                .map_err(|e| invalid(reason::INVALID_PAYLOAD, e.to_string()))?;
            let payment_requirements = serde_json::from_value(Value::Object(requirements))
                .map_err(|e| invalid(reason::INVALID_PAYMENT_REQUIREMENTS, e.to_string()))?;
            Ok(PaymentRequest::V2(FacilitatorRequestV2 {
                x402_version: top_version,
                payment_payload,
                payment_requirements,
            }))
        }
        _ => Err(invalid(
            reason::INVALID_X402_VERSION,
            "paymentPayload.x402Version must be 1 or 2".into(),
        )),
    }
}

/// The network to echo in a settle failure even when the body did not decode (digest §2.2).
fn best_effort_network(payload: &Map<String, Value>, requirements: &Map<String, Value>) -> String {
    let from_payload = payload
        .get("accepted")
        .and_then(|a| a.get("network"))
        .or_else(|| payload.get("network"));
    from_payload
        .or_else(|| requirements.get("network"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl PaymentRequest {
    /// The request as canonical JSON (object keys sorted), for storage and fingerprints.
    pub fn to_json(&self) -> String {
        let encoded = match self {
            PaymentRequest::V1(r) => serde_json::to_string(r),
            PaymentRequest::V2(r) => serde_json::to_string(r),
        };
        encoded.unwrap_or_default()
    }

    /// What makes two requests the same payment: the signed payload and the terms it pays
    /// (version, scheme, network, amount, asset, payee), as a SHA-256 hex digest. The envelope
    /// (resource description, `extra`, unknown fields, extensions) is left out, so a seller SDK
    /// that re-describes a resource between verify and settle still names the same payment.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let terms = serde_json::json!({
            "v": self.x402_version(),
            "payload": self.scheme_payload(),
            "scheme": self.scheme(),
            "network": self.network(),
            "amount": self.amount(),
            "asset": self.asset(),
            "payTo": self.pay_to(),
        });
        let digest = Sha256::digest(terms.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn x402_version(&self) -> u8 {
        match self {
            PaymentRequest::V1(_) => 1,
            PaymentRequest::V2(_) => 2,
        }
    }

    /// The scheme the seller requires; the registry dispatches on it.
    pub fn scheme(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.scheme,
            PaymentRequest::V2(r) => &r.payment_requirements.scheme,
        }
    }

    /// The network the seller requires, as written on the wire (CAIP-2 in v2, a name in v1).
    pub fn network(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.network,
            PaymentRequest::V2(r) => &r.payment_requirements.network,
        }
    }

    /// The scheme the client says it paid with (`accepted.scheme` / v1 `scheme`).
    pub fn payload_scheme(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_payload.scheme,
            PaymentRequest::V2(r) => &r.payment_payload.accepted.scheme,
        }
    }

    /// The network the client says it paid on; echoed in settle responses (digest §2.2).
    pub fn payload_network(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_payload.network,
            PaymentRequest::V2(r) => &r.payment_payload.accepted.network,
        }
    }

    /// Atomic amount required: `amount` (v2) or `maxAmountRequired` (v1).
    pub fn amount(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.max_amount_required,
            PaymentRequest::V2(r) => &r.payment_requirements.amount,
        }
    }

    pub fn asset(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.asset,
            PaymentRequest::V2(r) => &r.payment_requirements.asset,
        }
    }

    pub fn pay_to(&self) -> &str {
        match self {
            PaymentRequest::V1(r) => &r.payment_requirements.pay_to,
            PaymentRequest::V2(r) => &r.payment_requirements.pay_to,
        }
    }

    pub fn max_timeout_seconds(&self) -> u64 {
        match self {
            PaymentRequest::V1(r) => r.payment_requirements.max_timeout_seconds,
            PaymentRequest::V2(r) => r.payment_requirements.max_timeout_seconds,
        }
    }

    pub fn extra(&self) -> Option<&Value> {
        match self {
            PaymentRequest::V1(r) => r.payment_requirements.extra.as_ref(),
            PaymentRequest::V2(r) => r.payment_requirements.extra.as_ref(),
        }
    }

    /// The scheme-specific `payload` object, for the plugin to parse.
    pub fn scheme_payload(&self) -> &Map<String, Value> {
        match self {
            PaymentRequest::V1(r) => &r.payment_payload.payload,
            PaymentRequest::V2(r) => &r.payment_payload.payload,
        }
    }

    /// The URL of the paid resource, when the request names one.
    pub fn resource_url(&self) -> Option<&str> {
        match self {
            PaymentRequest::V1(r) => {
                Some(r.payment_requirements.resource.as_str()).filter(|s| !s.is_empty())
            }
            PaymentRequest::V2(r) => r.payment_payload.resource.as_ref().map(|r| r.url.as_str()),
        }
    }

    pub fn extensions(&self) -> Option<&Map<String, Value>> {
        match self {
            PaymentRequest::V1(_) => None,
            PaymentRequest::V2(r) => r.payment_payload.extensions.as_ref(),
        }
    }
}

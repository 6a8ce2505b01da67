//! A sign-in proof as the buyer sent it (the `SIGN-IN-WITH-X` payload), decoded, and the checks
//! on its fields that need no signature: the seller's domain and origin, the clock (issuedAt age,
//! expirationTime, notBefore). The order and the reasons are the official server's
//! (docs/sessions.md, "Checks").

use serde::Deserialize;
use serde_json::Value;

use super::reason;
use super::time::rfc3339_ms;

/// What the buyer signed, field by field (`@x402/extensions` `SIWxPayload`). Unknown keys are
/// ignored, as the official server's schema ignores them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Proof {
    pub domain: String,
    pub address: String,
    #[serde(default)]
    pub statement: Option<String>,
    pub uri: String,
    pub version: String,
    pub chain_id: String,
    /// `eip191` or `ed25519`; informational: the chain id's namespace decides the check.
    #[serde(rename = "type")]
    pub kind: SignatureType,
    pub nonce: String,
    pub issued_at: String,
    #[serde(default)]
    pub expiration_time: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    #[serde(default)]
    pub signature_scheme: Option<SignatureScheme>,
    pub signature: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignatureType {
    Eip191,
    Ed25519,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    Eip191,
    Eip1271,
    Eip6492,
    Siws,
}

/// A refused proof: a reason string and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

pub fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// The proof from the decoded payload object.
/// The proof from the payload's JSON text (read once, without an intermediate `Value`).
pub fn from_json(text: &str) -> Result<Proof, Refusal> {
    serde_json::from_str(text)
        .map_err(|e| refuse(reason::PAYLOAD, format!("Invalid SIWX payload: {e}")))
}

pub fn from_value(value: Value) -> Result<Proof, Refusal> {
    serde_json::from_value(value)
        .map_err(|e| refuse(reason::PAYLOAD, format!("Invalid SIWX payload: {e}")))
}

/// The proof from the raw header value: standard base64 (padding optional), UTF-8 JSON.
pub fn from_header(header: &str) -> Result<Proof, Refusal> {
    use base64_lite::decode;
    let bytes = decode(header.trim_end_matches('='))
        .ok_or_else(|| refuse(reason::PAYLOAD, "Invalid SIWX header: not valid base64"))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| refuse(reason::PAYLOAD, "Invalid SIWX header: not valid JSON"))?;
    from_value(value)
}

/// What the seller expects of a proof.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The seller's public host[:port], as its 402 challenge's `info.domain`.
    pub domain: String,
    /// The WHATWG origin (`https://api.example.com`) of the seller's resource URI.
    pub origin: String,
    pub max_age_ms: i64,
    /// How far the seller's clock may run ahead of ours when it stamped `issuedAt`.
    pub skew_ms: i64,
}

/// The checks of docs/sessions.md "Checks" 1–10, in that order; the issue time in unix ms.
pub fn check_fields(p: &Proof, e: &Expected, now: i64) -> Result<i64, Refusal> {
    if p.domain != e.domain {
        return Err(refuse(
            reason::DOMAIN_MISMATCH,
            format!(
                "Domain mismatch: expected \"{}\", got \"{}\"",
                e.domain, p.domain
            ),
        ));
    }
    let uri = url::Url::parse(&p.uri).map_err(|_| {
        refuse(
            reason::URI_MISMATCH,
            format!("Invalid URI: \"{}\" is not a valid URL", p.uri),
        )
    })?;
    let origin = uri.origin().ascii_serialization();
    if origin != e.origin {
        return Err(refuse(
            reason::URI_MISMATCH,
            format!(
                "URI mismatch: expected origin \"{}\", got \"{origin}\"",
                e.origin
            ),
        ));
    }
    let issued = rfc3339_ms(&p.issued_at)
        .ok_or_else(|| refuse(reason::ISSUED_AT, "Invalid issuedAt timestamp"))?;
    let age = now - issued;
    if age > e.max_age_ms {
        return Err(refuse(
            reason::TOO_OLD,
            format!(
                "Message too old: {}s exceeds {}s limit",
                (age + 500) / 1000,
                e.max_age_ms / 1000
            ),
        ));
    }
    if age < -e.skew_ms {
        return Err(refuse(reason::IN_FUTURE, "issuedAt is in the future"));
    }
    if let Some(t) = p.expiration_time.as_deref().filter(|t| !t.is_empty()) {
        let at = rfc3339_ms(t)
            .ok_or_else(|| refuse(reason::EXPIRATION_TIME, "Invalid expirationTime timestamp"))?;
        if at < now {
            return Err(refuse(reason::EXPIRED, "Message expired"));
        }
    }
    if let Some(t) = p.not_before.as_deref().filter(|t| !t.is_empty()) {
        let at = rfc3339_ms(t)
            .ok_or_else(|| refuse(reason::NOT_BEFORE, "Invalid notBefore timestamp"))?;
        if now < at {
            return Err(refuse(
                reason::NOT_YET_VALID,
                "Message not yet valid (notBefore is in the future)",
            ));
        }
    }
    Ok(issued)
}

/// Standard-alphabet base64 decoding, strict (no whitespace, no URL-safe letters), as the
/// official server's header regex: small enough to own rather than add a dependency for.
mod base64_lite {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let value = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        if s.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        for chunk in s.as_bytes().chunks(4) {
            let mut acc = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                acc |= value(*c)? << (18 - 6 * i);
            }
            let bytes = acc.to_be_bytes();
            out.extend_from_slice(&bytes[1..chunk.len()]);
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn decodes_with_and_without_padding() {
            assert_eq!(super::decode("aGk").as_deref(), Some(&b"hi"[..]));
            assert_eq!(super::decode("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
            assert_eq!(super::decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
            assert_eq!(super::decode("a-b_"), None);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The spec-example fields (docs/sessions.md, "Test vectors").
    pub fn proof(chain_id: &str, address: &str) -> Proof {
        Proof {
            domain: "api.example.com".into(),
            address: address.into(),
            statement: Some("Sign in to access premium data".into()),
            uri: "https://api.example.com/premium-data".into(),
            version: "1".into(),
            chain_id: chain_id.into(),
            kind: SignatureType::Eip191,
            nonce: "a1b2c3d4e5f67890a1b2c3d4e5f67890".into(),
            issued_at: "2024-01-15T10:30:00.000Z".into(),
            expiration_time: Some("2024-01-15T10:35:00.000Z".into()),
            not_before: None,
            request_id: None,
            resources: Some(vec!["https://api.example.com/premium-data".into()]),
            signature_scheme: None,
            signature: String::new(),
        }
    }

    fn expected() -> Expected {
        Expected {
            domain: "api.example.com".into(),
            origin: "https://api.example.com".into(),
            max_age_ms: 300_000,
            skew_ms: 0,
        }
    }

    #[test]
    fn field_checks_in_the_official_order() {
        let p = proof("eip155:8453", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let issued = rfc3339_ms(&p.issued_at).expect("date");
        assert_eq!(check_fields(&p, &expected(), issued + 1000), Ok(issued));
        let at = |p: &Proof, now| check_fields(p, &expected(), now).map_err(|r| r.reason);
        assert_eq!(at(&p, issued + 300_001), Err(reason::TOO_OLD));
        assert_eq!(at(&p, issued - 1), Err(reason::IN_FUTURE));
        let mut q = p.clone();
        q.expiration_time = Some("2024-01-15T10:30:00.500Z".into());
        assert_eq!(at(&q, issued + 1000), Err(reason::EXPIRED));
        let mut q = p.clone();
        q.not_before = Some("2024-01-15T10:31:00Z".into());
        assert_eq!(at(&q, issued + 1000), Err(reason::NOT_YET_VALID));
        let mut q = p.clone();
        q.domain = "evil.example.com".into();
        assert_eq!(at(&q, issued), Err(reason::DOMAIN_MISMATCH));
        let mut q = p.clone();
        q.uri = "https://api.example.com:8443/premium-data".into();
        assert_eq!(at(&q, issued), Err(reason::URI_MISMATCH));
        let mut q = p;
        q.issued_at = "yesterday".into();
        assert_eq!(at(&q, issued), Err(reason::ISSUED_AT));
    }
}

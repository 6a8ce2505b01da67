//! Parsing the `permit2Authorization` payload (digest §4.6, §10.2.1) into checked values.
//!
//! Numbers are accepted as decimal or `0x` hex strings, as the SDK's `BigInt(string)` reads them
//! (the client sends decimal; the spec's example shows a hex nonce), up to 2²⁵⁶ − 1. Addresses are
//! compared without regard to case. `upto` first applies the SDK's strict type guard: a payload
//! whose fields are not all strings is not an `upto` payload at all (`unsupported_payload_type`).

use alloy::primitives::{Address, Bytes, U256};
use serde_json::{Map, Value};

use super::{Authorization, Proxy};
use crate::schemes::evm::payload::{Deployment, parse_address, unwrap_6492};

/// Why a payload did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a Permit2 payload of this scheme.
    Unsupported(String),
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub authorization: Authorization,
    /// The signature the contracts check (an ERC-6492 wrapper removed, as the SDK's settle does).
    pub signature: Bytes,
    /// An ERC-6492 deployment wrapper was present: the Permit2 path cannot deploy the wallet.
    pub deployment: Option<Deployment>,
}

/// The field paths the `upto` type guard requires to be strings (the SDK's `isUptoPermit2Payload`).
const UPTO_STRINGS: &[&[&str]] = &[
    &["from"],
    &["spender"],
    &["nonce"],
    &["deadline"],
    &["permitted", "token"],
    &["permitted", "amount"],
    &["witness", "to"],
    &["witness", "facilitator"],
    &["witness", "validAfter"],
];

fn at<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut here = obj;
    for key in parents {
        here = here.get(*key)?.as_object()?;
    }
    here.get(*last)
}

/// The `from` of a payload as written, for a rejection's `payer` before anything parsed.
pub fn raw_from(payload: &Map<String, Value>) -> Option<String> {
    payload
        .get("permit2Authorization")?
        .get("from")?
        .as_str()
        .map(str::to_string)
}

pub fn parse(payload: &Map<String, Value>, kind: Proxy) -> Result<Parsed, ParseError> {
    let Some(Value::Object(auth)) = payload.get("permit2Authorization") else {
        return Err(ParseError::Unsupported(
            "payload.permit2Authorization is missing".into(),
        ));
    };
    if kind == Proxy::Upto {
        let all_strings = payload.get("signature").is_some_and(Value::is_string)
            && UPTO_STRINGS
                .iter()
                .all(|path| at(auth, path).is_some_and(Value::is_string));
        if !all_strings {
            return Err(ParseError::Unsupported(
                "not an upto Permit2 payload: signature and every permit2Authorization field \
                 (from, spender, nonce, deadline, permitted.token, permitted.amount, witness.to, \
                 witness.facilitator, witness.validAfter) must be strings"
                    .into(),
            ));
        }
    }
    let authorization = Authorization {
        from: address(auth, &["from"])?,
        token: address(auth, &["permitted", "token"])?,
        amount: number(auth, &["permitted", "amount"])?,
        spender: address(auth, &["spender"])?,
        nonce: number(auth, &["nonce"])?,
        deadline: number(auth, &["deadline"])?,
        to: address(auth, &["witness", "to"])?,
        facilitator: match kind {
            Proxy::Exact => None,
            Proxy::Upto => Some(address(auth, &["witness", "facilitator"])?),
        },
        valid_after: number(auth, &["witness", "validAfter"])?,
    };
    let raw = payload
        .get("signature")
        .and_then(Value::as_str)
        .and_then(hex_bytes)
        .ok_or_else(|| malformed("signature", "is not 0x-prefixed hex"))?;
    let (signature, deployment) =
        unwrap_6492(raw).map_err(|e| ParseError::Malformed(format!("signature: {e:?}")))?;
    Ok(Parsed {
        authorization,
        signature,
        deployment,
    })
}

fn malformed(path: &str, what: &str) -> ParseError {
    ParseError::Malformed(format!("permit2Authorization.{path} {what}"))
}

fn address(obj: &Map<String, Value>, path: &[&str]) -> Result<Address, ParseError> {
    at(obj, path)
        .and_then(Value::as_str)
        .and_then(parse_address)
        .ok_or_else(|| malformed(&path.join("."), "is not an address"))
}

fn number(obj: &Map<String, Value>, path: &[&str]) -> Result<U256, ParseError> {
    at(obj, path)
        .and_then(Value::as_str)
        .and_then(parse_uint)
        .ok_or_else(|| {
            malformed(
                &path.join("."),
                "is not a decimal or 0x-hex integer below 2^256",
            )
        })
}

/// A decimal string of at most 78 digits, or `0x` and 1–64 hex digits; nothing else.
pub fn parse_uint(s: &str) -> Option<U256> {
    if let Some(hex) = s.strip_prefix("0x") {
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return U256::from_str_radix(hex, 16).ok();
    }
    crate::schemes::evm::payload::parse_decimal(s)
}

fn hex_bytes(s: &str) -> Option<Bytes> {
    let body = s.strip_prefix("0x")?;
    alloy::primitives::hex::decode(body).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample(kind: Proxy) -> Map<String, Value> {
        let mut witness =
            json!({ "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "validAfter": "0" });
        if kind == Proxy::Upto {
            witness["facilitator"] = json!("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
        }
        let v = json!({
            "signature": format!("0x{}", "11".repeat(65)),
            "permit2Authorization": {
                "from": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                "permitted": { "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "amount": "2500" },
                "spender": "0x402085c248EeA27D92E8b30b2C58ed07f9E20001",
                "nonce": "114518175967977549088359416299479109397179519746067315629021037921481522304543",
                "deadline": "1796138360",
                "witness": witness,
            }
        });
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_the_sdk_shapes() {
        let exact = parse(&sample(Proxy::Exact), Proxy::Exact).expect("exact parses");
        assert_eq!(exact.authorization.amount, U256::from(2500));
        assert_eq!(exact.authorization.facilitator, None);
        let upto = parse(&sample(Proxy::Upto), Proxy::Upto).expect("upto parses");
        assert!(upto.authorization.facilitator.is_some());
        assert_eq!(upto.signature.len(), 65);
    }

    #[test]
    fn numbers_are_decimal_or_hex_below_two_to_the_256() {
        assert_eq!(parse_uint("0x10"), Some(U256::from(16)));
        assert_eq!(parse_uint("16"), Some(U256::from(16)));
        assert_eq!(
            parse_uint(&format!("0x{}", "f".repeat(64))),
            Some(U256::MAX)
        );
        assert_eq!(parse_uint(&format!("0x1{}", "0".repeat(64))), None);
        assert_eq!(parse_uint(&"9".repeat(78)), None, "above 2^256 - 1");
        for bad in ["", "0x", "-1", " 1", "1e3", "0xg"] {
            assert_eq!(parse_uint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn upto_needs_every_field_as_a_string() {
        let mut p = sample(Proxy::Upto);
        p["permit2Authorization"]["deadline"] = json!(1796138360u64);
        assert!(matches!(
            parse(&p, Proxy::Upto),
            Err(ParseError::Unsupported(_))
        ));
        let mut p = sample(Proxy::Upto);
        p["permit2Authorization"]["witness"]
            .as_object_mut()
            .map(|w| w.remove("facilitator"));
        assert!(matches!(
            parse(&p, Proxy::Upto),
            Err(ParseError::Unsupported(_))
        ));
        // exact has no such guard: a number is malformed, not another payload type
        let mut p = sample(Proxy::Exact);
        p["permit2Authorization"]["deadline"] = json!(1796138360u64);
        assert!(matches!(
            parse(&p, Proxy::Exact),
            Err(ParseError::Malformed(_))
        ));
    }
}

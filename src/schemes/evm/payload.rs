//! Parsing an EIP-3009 `exact` payload into checked values (digest §4.1–§4.2): the authorization,
//! the signature in its three shapes (EOA, ERC-1271 bytes, ERC-6492-wrapped), and the EIP-712
//! signing hash over the domain named by the requirements.

use std::str::FromStr;

use alloy::primitives::{Address, B256, Bytes, U256, hex};
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue};
use serde_json::{Map, Value};

use super::contracts::{Erc6492Wrapper, TransferWithAuthorization};

/// The 32-byte suffix that marks an ERC-6492 wrapped signature.
pub const ERC6492_MAGIC: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: U256,
    pub valid_before: U256,
    pub nonce: B256,
}

/// The deployment data of an ERC-6492 wrapped signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub factory: Address,
    pub calldata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPayload {
    pub authorization: Authorization,
    /// The signature the token will check (the ERC-6492 wrapper removed).
    pub signature: Bytes,
    /// Present when the signature was ERC-6492 wrapped with a non-zero factory and calldata.
    pub deployment: Option<Deployment>,
}

/// Why a payload did not parse; the plugin turns it into a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Not an EIP-3009 payload at all (e.g. Permit2).
    UnsupportedType(String),
    Malformed(String),
}

pub fn parse(payload: &Map<String, Value>) -> Result<ParsedPayload, PayloadError> {
    if payload.contains_key("permit2Authorization") {
        return Err(PayloadError::UnsupportedType(
            "Permit2 payloads are x402 v2 only".into(),
        ));
    }
    let Some(Value::Object(auth)) = payload.get("authorization") else {
        return Err(PayloadError::UnsupportedType(
            "payload.authorization is missing".into(),
        ));
    };
    let authorization = Authorization {
        from: address(auth, "from")?,
        to: address(auth, "to")?,
        value: uint(auth, "value")?,
        valid_after: uint(auth, "validAfter")?,
        valid_before: uint(auth, "validBefore")?,
        nonce: nonce(auth)?,
    };
    let raw = match payload.get("signature") {
        Some(Value::String(s)) => {
            hex_bytes(s).ok_or_else(|| bad("signature", "is not 0x-prefixed hex"))?
        }
        _ => return Err(bad("signature", "is missing")),
    };
    let (signature, deployment) = unwrap_6492(raw)?;
    Ok(ParsedPayload {
        authorization,
        signature,
        deployment,
    })
}

/// Splits an ERC-6492 wrapper into its deployment data and inner signature.
pub fn unwrap_6492(raw: Bytes) -> Result<(Bytes, Option<Deployment>), PayloadError> {
    if raw.len() < 32 || raw[raw.len() - 32..] != ERC6492_MAGIC {
        return Ok((raw, None));
    }
    let body = &raw[..raw.len() - 32];
    let wrapper = Erc6492Wrapper::abi_decode_params(body).map_err(|e| {
        bad(
            "signature",
            &format!("has the ERC-6492 suffix but no valid wrapper: {e}"),
        )
    })?;
    let deployment =
        (!wrapper.factory.is_zero() && !wrapper.factoryCalldata.is_empty()).then(|| Deployment {
            factory: wrapper.factory,
            calldata: wrapper.factoryCalldata,
        });
    Ok((wrapper.signature, deployment))
}

/// The EIP-712 hash the payer signed, with the domain built from the requirements (digest §4.2).
pub fn signing_hash(
    auth: &Authorization,
    name: &str,
    version: &str,
    chain_id: u64,
    asset: Address,
) -> B256 {
    let domain = Eip712Domain::new(
        Some(name.to_string().into()),
        Some(version.to_string().into()),
        Some(U256::from(chain_id)),
        Some(asset),
        None,
    );
    TransferWithAuthorization {
        from: auth.from,
        to: auth.to,
        value: auth.value,
        validAfter: auth.valid_after,
        validBefore: auth.valid_before,
        nonce: auth.nonce,
    }
    .eip712_signing_hash(&domain)
}

fn bad(field: &str, what: &str) -> PayloadError {
    PayloadError::Malformed(format!("{field} {what}"))
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a Value, PayloadError> {
    obj.get(name)
        .ok_or_else(|| bad(&format!("authorization.{name}"), "is missing"))
}

fn address(obj: &Map<String, Value>, name: &str) -> Result<Address, PayloadError> {
    field(obj, name)?
        .as_str()
        .and_then(parse_address)
        .ok_or_else(|| bad(&format!("authorization.{name}"), "is not an address"))
}

fn uint(obj: &Map<String, Value>, name: &str) -> Result<U256, PayloadError> {
    let v = field(obj, name)?;
    let parsed = match v {
        Value::String(s) => parse_decimal(s),
        Value::Number(n) => n.as_u64().map(U256::from),
        _ => None,
    };
    parsed.ok_or_else(|| {
        bad(
            &format!("authorization.{name}"),
            "is not a non-negative decimal integer",
        )
    })
}

fn nonce(obj: &Map<String, Value>) -> Result<B256, PayloadError> {
    field(obj, "nonce")?
        .as_str()
        .filter(|s| s.len() == 66 && s.starts_with("0x"))
        .and_then(|s| B256::from_str(s).ok())
        .ok_or_else(|| bad("authorization.nonce", "is not 32 bytes of 0x-prefixed hex"))
}

/// A 20-byte hex address; case is not checked, as the SDKs send checksummed and lower case alike.
pub fn parse_address(s: &str) -> Option<Address> {
    (s.len() == 42 && s.starts_with("0x"))
        .then(|| Address::from_str(s).ok())
        .flatten()
}

/// A decimal string of at most 78 digits with no sign, spaces or other characters (x402-rs PR #97).
pub fn parse_decimal(s: &str) -> Option<U256> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(s, 10).ok()
}

fn hex_bytes(s: &str) -> Option<Bytes> {
    let body = s.strip_prefix("0x")?;
    hex::decode(body).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(signature: &str) -> Map<String, Value> {
        let v = json!({
            "signature": signature,
            "authorization": {
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "value": "10000", "validAfter": "0", "validBefore": "1740672154",
                "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
            }
        });
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_plain_signature() {
        let sig = format!("0x{}", "11".repeat(65));
        let p = parse(&payload(&sig)).expect("parses");
        assert_eq!(p.authorization.value, U256::from(10000));
        assert_eq!(p.signature.len(), 65);
        assert!(p.deployment.is_none());
    }

    #[test]
    fn unwraps_erc6492() {
        let inner = Bytes::from(vec![7u8; 65]);
        let factory = Address::repeat_byte(0x42);
        let body = (factory, Bytes::from(vec![1u8, 2, 3]), inner.clone()).abi_encode_params();
        let wrapped = format!("0x{}{}", hex::encode(body), hex::encode(ERC6492_MAGIC));
        let p = parse(&payload(&wrapped)).expect("parses");
        assert_eq!(p.signature, inner);
        assert_eq!(
            p.deployment,
            Some(Deployment {
                factory,
                calldata: Bytes::from(vec![1u8, 2, 3])
            })
        );
    }

    #[test]
    fn rejects_bad_numbers_and_permit2() {
        let mut p = payload("0x00");
        p["authorization"]["value"] = json!("1abc");
        assert!(matches!(parse(&p), Err(PayloadError::Malformed(_))));
        p["authorization"]["value"] = json!("-1");
        assert!(matches!(parse(&p), Err(PayloadError::Malformed(_))));
        let mut permit2 = Map::new();
        permit2.insert("permit2Authorization".into(), json!({}));
        assert!(matches!(
            parse(&permit2),
            Err(PayloadError::UnsupportedType(_))
        ));
        assert!(
            parse_decimal("").is_none()
                && parse_decimal(" 1").is_none()
                && parse_decimal(&"9".repeat(79)).is_none()
        );
    }
}

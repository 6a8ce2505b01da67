//! The `eip2612GasSponsoring` extension (digest §4.6, §6.4; docs/schemes.md): a payer with no
//! Permit2 allowance signs an EIP-2612 `permit(owner, Permit2, value, deadline)` for the token,
//! sent in `paymentPayload.extensions.eip2612GasSponsoring.info`; the proxy's
//! `settleWithPermit` submits it in the same transaction as the payment.
//!
//! As the SDK reads it: the extension counts only when all eight `info` fields are present and
//! non-empty (`from, asset, spender, amount, nonce, deadline, signature, version`; other keys and
//! the `schema` object are ignored); then, in order, the formats
//! (`invalid_eip2612_extension_format`), `from` = the payer, `asset` = the required asset,
//! `spender` = Permit2, `deadline ≥ now + 6 s`. The value is not compared with the permitted
//! amount here: the proxy refuses a mismatch (`Permit2612AmountMismatch`). Unlike the SDK (which
//! fails later, in the simulation), a signature that is not 65 bytes is a format error: the
//! proxies take it as `(r, s, v)`.

use alloy::primitives::{Address, B256, U256};
use serde_json::Value;

use crate::protocol::PaymentRequest;
use crate::scheme::Rejection;
use crate::schemes::evm::payload::parse_decimal;
use crate::schemes::evm::reason;

pub const EXTENSION: &str = "eip2612GasSponsoring";

/// The permit as the proxy's `EIP2612Permit` struct takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip2612Permit {
    pub value: U256,
    pub deadline: U256,
    pub r: B256,
    pub s: B256,
    pub v: u8,
}

const FIELDS: [&str; 8] = [
    "from",
    "asset",
    "spender",
    "amount",
    "nonce",
    "deadline",
    "signature",
    "version",
];

/// JavaScript truthiness of a JSON value (the SDK's `!info.x` test).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(_) => true,
    }
}

/// The field as the SDK's regular expressions see it (a JSON number is read as its digits).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_version(s: &str) -> bool {
    s.split('.').all(is_digits)
}

/// What the payment carries, checked against the payment (`payer`, `asset`) and Permit2.
/// `Ok(None)`: no (usable-looking) extension, the plain `settle` is used.
pub fn extract(
    request: &PaymentRequest,
    payer: Address,
    asset: Address,
    permit2: Address,
    now: u64,
) -> Result<Option<Eip2612Permit>, Rejection> {
    let Some(info) = request
        .extensions()
        .and_then(|e| e.get(EXTENSION))
        .and_then(|e| e.get("info"))
        .filter(|i| truthy(Some(i)))
    else {
        return Ok(None);
    };
    if !FIELDS.iter().all(|f| truthy(info.get(*f))) {
        return Ok(None);
    }
    let field = |name: &str| text(info.get(name)).unwrap_or_default();
    let (from, asset_field, spender) = (field("from"), field("asset"), field("spender"));
    let (amount, nonce, deadline) = (field("amount"), field("nonce"), field("deadline"));
    let (signature, version) = (field("signature"), field("version"));
    let format = |what: &str| {
        Rejection::new(reason::EIP2612_INVALID_FORMAT)
            .with_message(format!("eip2612GasSponsoring.info: {what}"))
    };
    let hex_sig = signature
        .strip_prefix("0x")
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let formats_ok = is_address(&from)
        && is_address(&asset_field)
        && is_address(&spender)
        && is_digits(&amount)
        && is_digits(&nonce)
        && is_digits(&deadline)
        && hex_sig.is_some()
        && is_version(&version);
    if !formats_ok {
        return Err(format(
            "from/asset/spender must be addresses, amount/nonce/deadline decimal, signature hex, \
             version dotted digits",
        ));
    }
    let addr = |s: &str| crate::schemes::evm::payload::parse_address(s).unwrap_or_default();
    if addr(&from) != payer {
        return Err(
            Rejection::new(reason::EIP2612_FROM_MISMATCH).with_message(format!(
                "the permit is signed for {from}, the payment by {payer}"
            )),
        );
    }
    if addr(&asset_field) != asset {
        return Err(
            Rejection::new(reason::EIP2612_ASSET_MISMATCH).with_message(format!(
                "the permit is for {asset_field}, the payment in {asset}"
            )),
        );
    }
    if addr(&spender) != permit2 {
        return Err(
            Rejection::new(reason::EIP2612_SPENDER_NOT_PERMIT2).with_message(format!(
                "the permit approves {spender}, not Permit2 {permit2}"
            )),
        );
    }
    let (Some(value), Some(deadline)) = (parse_decimal(&amount), parse_decimal(&deadline)) else {
        return Err(format("amount and deadline must be below 2^256"));
    };
    if deadline < U256::from(now + super::EXPIRY_BUFFER_SECS) {
        return Err(Rejection::new(reason::EIP2612_DEADLINE_EXPIRED)
            .with_message("the EIP-2612 permit expired or expires within 6 s"));
    }
    let bytes = hex_sig
        .and_then(|h| alloy::primitives::hex::decode(h).ok())
        .filter(|b| b.len() == 65)
        .ok_or_else(|| format("signature must be 65 bytes r‖s‖v"))?;
    Ok(Some(Eip2612Permit {
        value,
        deadline,
        r: B256::from_slice(&bytes[0..32]),
        s: B256::from_slice(&bytes[32..64]),
        v: bytes[64],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_sdk() {
        assert!(is_version("1") && is_version("1.2.3") && !is_version("1.") && !is_version("v1"));
        assert!(is_address("0x000000000022D473030F116dDEE9F6B43aC78BA3"));
        assert!(!is_address("0x000000000022D473030F116dDEE9F6B43aC78BA"));
        assert!(truthy(Some(&Value::String("0".into()))));
        assert!(!truthy(Some(&serde_json::json!(0))));
        assert!(!truthy(Some(&Value::String(String::new()))));
    }
}

//! The `[auth]`, `[rate_limit]` and `[policy]` sections, and the `policy` / `budget` tables of a
//! network: their typed form and the checks that need no database.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::string_list;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Every endpoint but `/health` (and `/openapi.json`) needs a key, even before one exists.
    /// Off, auth still switches on by itself as soon as a key is created.
    pub required: bool,
    /// How long a key lookup (and the "any key exists" answer) is trusted before the ledger is
    /// asked again: the time a revocation takes to reach every replica.
    pub cache_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            required: false,
            cache_ms: 500,
        }
    }
}

/// Requests per second for each endpoint class.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Rates {
    pub verify: u32,
    pub settle: u32,
    /// Every other endpoint (`/supported`, receipts, discovery, sessions, console, metrics).
    pub other: u32,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            verify: 20,
            settle: 10,
            other: 50,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// A client may send this many seconds' worth of its rate at once.
    pub burst_seconds: u32,
    pub per_ip: Rates,
    pub per_key: Rates,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs): the client is the right-most address
    /// not in this list. Empty: the TCP peer is the client.
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Clients never limited (CIDRs), e.g. health checkers and local tools.
    #[serde(deserialize_with = "string_list")]
    pub exempt: Vec<String>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            enabled: true,
            burst_seconds: 2,
            per_ip: Rates::default(),
            per_key: Rates {
                verify: 200,
                settle: 100,
                other: 200,
            },
            trusted_proxies: Vec::new(),
            exempt: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicySettings {
    /// Addresses never served as payer or payee, one per line (`#` comments); re-read when the
    /// file changes (sanctions screening).
    pub deny_list_file: Option<PathBuf>,
    /// How often the deny-list file is looked at for changes.
    pub deny_list_reload_ms: u64,
    /// Settle payments whose payer is also the payee. Off: refused (they move nothing and
    /// cost us the fee).
    pub allow_self_payment: bool,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            deny_list_file: None,
            deny_list_reload_ms: 2000,
            allow_self_payment: false,
        }
    }
}

/// Which assets a network accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AssetPolicy {
    /// The network's known stablecoins (its preset); a network without a preset accepts any.
    #[default]
    Known,
    Any,
    Only(Vec<String>),
}

impl Serialize for AssetPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AssetPolicy::Known => s.serialize_str("known"),
            AssetPolicy::Any => s.serialize_str("any"),
            AssetPolicy::Only(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AssetPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list: Vec<String> = string_list(d)?;
        Ok(match list.as_slice() {
            [one] if one.eq_ignore_ascii_case("known") => AssetPolicy::Known,
            [one] if one.eq_ignore_ascii_case("any") => AssetPolicy::Any,
            [] => AssetPolicy::Known,
            _ => AssetPolicy::Only(list),
        })
    }
}

/// `networks.<slug>.policy`: what an operator accepts on one network. Amounts are in the
/// asset's base units.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkPolicy {
    pub assets: AssetPolicy,
    /// Smallest accepted amount, for every asset without its own entry in `min_amounts`.
    pub min_amount: Option<String>,
    pub min_amounts: BTreeMap<String, String>,
    /// Largest accepted amount, for every asset without its own entry in `max_amounts`.
    pub max_amount: Option<String>,
    pub max_amounts: BTreeMap<String, String>,
    /// When not empty, only these payees are served.
    #[serde(deserialize_with = "string_list")]
    pub pay_to_allow: Vec<String>,
    #[serde(deserialize_with = "string_list")]
    pub pay_to_deny: Vec<String>,
    /// Longest accepted authorization window (validBefore − validAfter, or the time left until
    /// validBefore when validAfter is in the past), in seconds.
    pub max_authorization_secs: Option<u64>,
}

/// `networks.<slug>.budget`: fee spend caps, shared by every replica. Amounts are in the
/// native coin (ETH, SOL…) as decimal strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkBudget {
    /// What one settle is counted as spending (reserved when it is claimed, given back when no
    /// transaction was sent). Required for any of the daily caps.
    pub fee_per_settle: Option<String>,
    /// Per UTC day, for the whole network.
    pub daily_cap: Option<String>,
    pub per_key_daily: Option<String>,
    pub per_payer_daily: Option<String>,
    pub per_pay_to_daily: Option<String>,
    /// A payer with this many payments that failed on chain (after passing simulation) within
    /// `failed_landing_window_secs` is refused until the window ends.
    pub failed_landings_per_payer: Option<u32>,
    pub failed_landing_window_secs: u64,
}

impl Default for NetworkBudget {
    fn default() -> Self {
        NetworkBudget {
            fee_per_settle: None,
            daily_cap: None,
            per_key_daily: None,
            per_payer_daily: None,
            per_pay_to_daily: None,
            failed_landings_per_payer: Some(3),
            failed_landing_window_secs: 3600,
        }
    }
}

/// A decimal amount ("0.0005") in units of 10^-`decimals` (wei for 18, lamports for 9).
/// Our own rather than alloy's `parse_units`, which accepts negative amounts and silently
/// truncates surplus decimals: a cap or a threshold that quietly rounds is the wrong number.
pub fn decimal_units(text: &str, decimals: u32) -> Result<u128, String> {
    let t = text.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(format!("`{text}` is not a decimal amount"));
    }
    let d = decimals as usize;
    // ASCII digits only (checked above), so byte slicing is on character boundaries.
    if frac.len() > d && frac[d..].bytes().any(|c| c != b'0') {
        return Err(format!("`{text}` has more than {decimals} decimals"));
    }
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(d).collect();
    let number = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            return Ok(0);
        }
        s.parse().map_err(|_| format!("`{text}` is too large"))
    };
    10u128
        .checked_pow(decimals)
        .and_then(|scale| number(whole).ok()?.checked_mul(scale))
        .zip(number(&frac).ok())
        .and_then(|(w, f)| w.checked_add(f))
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A native-coin amount in nano-units (gwei on EVM, lamports on Solana: both 10^-9), as the
/// budget counters store them.
pub fn nano_units(text: &str) -> Result<i64, String> {
    decimal_units(text, 9)
        .and_then(|n| i64::try_from(n).map_err(|_| format!("`{text}` is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_amounts_parse_to_nano_units() {
        assert_eq!(nano_units("1"), Ok(1_000_000_000));
        assert_eq!(nano_units("0.00002"), Ok(20_000));
        assert_eq!(nano_units(".5"), Ok(500_000_000));
        assert_eq!(nano_units("0.0000000010"), Ok(1));
        assert!(nano_units("0.0000000001").is_err());
        assert!(nano_units("-1").is_err());
        assert!(nano_units("1e9").is_err());
        assert!(nano_units("").is_err());
        assert!(nano_units("99999999999999999999").is_err());
    }

    #[test]
    fn asset_policy_reads_words_and_lists() {
        let p: NetworkPolicy =
            serde_json::from_value(serde_json::json!({"assets": "any"})).expect("parses");
        assert_eq!(p.assets, AssetPolicy::Any);
        let p: NetworkPolicy =
            serde_json::from_value(serde_json::json!({"assets": "0xa,0xb"})).expect("parses");
        assert_eq!(
            p.assets,
            AssetPolicy::Only(vec!["0xa".into(), "0xb".into()])
        );
        let p: NetworkPolicy = serde_json::from_value(serde_json::json!({})).expect("parses");
        assert_eq!(p.assets, AssetPolicy::Known);
    }
}

//! "Has this wallet paid for this resource lately?" answered from settled payments, and the one
//! place that decides which payments a caller may see (`scope`).

use super::SessionError;
use crate::ledger::{EntitledPayment, EntitlementLookup, Ledger};

/// Longest window a caller may ask about (a year and a day).
pub const MAX_WITHIN_SECS: u64 = 366 * 86_400;

/// An entitlement question as the caller asked it.
#[derive(Debug, Clone)]
pub struct Question {
    pub payer: String,
    /// A resource URL; matched on origin + path as discovery normalises it.
    pub resource: String,
    pub within_secs: u64,
    /// Only payments to this address.
    pub pay_to: Option<String>,
    /// Only payments on this CAIP-2 network.
    pub network: Option<String>,
}

/// Which payees' payments a question may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayToScope {
    Any,
    /// Lower-cased addresses.
    OneOf(Vec<String>),
    /// Nothing the caller may see can answer: not entitled, no query.
    Nothing,
}

/// The scoping decision, in one place. `allowed` is the list of payTo addresses the caller's
/// credentials cover (`None`: an unscoped caller — today every caller, until API keys (#12)
/// pass their key's payTo list here). A requested payTo outside `allowed` sees nothing.
pub fn scope(requested: Option<&str>, allowed: Option<&[String]>) -> PayToScope {
    let lower = |s: &str| s.to_ascii_lowercase();
    match (requested, allowed) {
        (None, None) => PayToScope::Any,
        (Some(r), None) => PayToScope::OneOf(vec![lower(r)]),
        (Some(r), Some(list)) if list.iter().any(|a| a.eq_ignore_ascii_case(r)) => {
            PayToScope::OneOf(vec![lower(r)])
        }
        (None, Some(list)) if !list.is_empty() => {
            PayToScope::OneOf(list.iter().map(|a| lower(a)).collect())
        }
        _ => PayToScope::Nothing,
    }
}

/// The resource key a question matches, or why the resource is not one.
pub fn resource_key(resource: &str) -> Result<String, String> {
    crate::discovery::resource::entitlement_key(resource)
        .ok_or_else(|| format!("resource \"{resource}\" is not an http(s) URL"))
}

/// The newest settled payment answering `q` within its window, seen through `allowed`.
pub async fn lookup(
    ledger: &Ledger,
    q: &Question,
    allowed: Option<&[String]>,
    now_ms: i64,
) -> Result<Option<EntitledPayment>, SessionError> {
    let key = resource_key(&q.resource).map_err(SessionError::Input)?;
    let pay_to = match scope(q.pay_to.as_deref(), allowed) {
        PayToScope::Nothing => return Ok(None),
        PayToScope::Any => None,
        PayToScope::OneOf(list) => Some(list),
    };
    let within_ms = i64::try_from(q.within_secs.min(MAX_WITHIN_SECS) * 1000).unwrap_or(i64::MAX);
    let lookup = EntitlementLookup {
        resource_key: &key,
        payer: &q.payer,
        since: now_ms.saturating_sub(within_ms),
        pay_to: pay_to.as_deref(),
        network: q.network.as_deref(),
    };
    Ok(ledger.entitlement(&lookup).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_caller_sees_only_its_payees() {
        let keys = vec!["0xAbC".to_string(), "0xdef".to_string()];
        assert_eq!(scope(None, None), PayToScope::Any);
        assert_eq!(
            scope(Some("0xABC"), None),
            PayToScope::OneOf(vec!["0xabc".into()])
        );
        assert_eq!(
            scope(Some("0xabc"), Some(&keys)),
            PayToScope::OneOf(vec!["0xabc".into()])
        );
        assert_eq!(scope(Some("0x999"), Some(&keys)), PayToScope::Nothing);
        assert_eq!(
            scope(None, Some(&keys)),
            PayToScope::OneOf(vec!["0xabc".into(), "0xdef".into()])
        );
        assert_eq!(scope(None, Some(&[])), PayToScope::Nothing);
    }
}

//! Operator policy: what this facilitator agrees to verify and settle, judged from the payment's
//! own parsed fields before any RPC call (so a refused payment costs us nothing): payer ≠ payee,
//! the accepted assets, minimum and maximum amounts, payee allow and deny lists, a deny list of
//! addresses from a file (reloaded when it changes), the longest authorization window, and the
//! payees an API key may settle for. Each refusal has its own reason string (docs/access.md).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::keys::{Caller, same_address};
use super::settings::{AssetPolicy, NetworkPolicy, PolicySettings};
use crate::scheme::{PaymentMeta, Rejection};

/// The reason strings of policy refusals (answered with HTTP 200, like every business "no").
pub mod reasons {
    pub const SELF_PAYMENT: &str = "policy_self_payment";
    pub const ASSET_NOT_ACCEPTED: &str = "policy_asset_not_accepted";
    pub const AMOUNT_BELOW_MINIMUM: &str = "policy_amount_below_minimum";
    pub const AMOUNT_ABOVE_MAXIMUM: &str = "policy_amount_above_maximum";
    pub const PAY_TO_NOT_ACCEPTED: &str = "policy_pay_to_not_accepted";
    pub const ADDRESS_DENIED: &str = "policy_address_denied";
    pub const WINDOW_TOO_LONG: &str = "policy_authorization_window_too_long";
    pub const PAY_TO_NOT_ALLOWED_FOR_KEY: &str = "policy_pay_to_not_allowed_for_key";
    pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";
    pub const PAYER_FAILING: &str = "budget_payer_failed_landings";
}

/// One network's rules, parsed once.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// `None`: any asset.
    assets: Option<Vec<String>>,
    min_amount: Option<u128>,
    min_amounts: Vec<(String, u128)>,
    max_amount: Option<u128>,
    max_amounts: Vec<(String, u128)>,
    pay_to_allow: Vec<String>,
    pay_to_deny: Vec<String>,
    max_window: Option<u64>,
}

fn amount(text: &str, what: &str) -> Result<u128, String> {
    text.trim()
        .parse::<u128>()
        .map_err(|_| format!("{what}: `{text}` is not an amount in base units"))
}

impl Rules {
    fn new(slug: &str, p: &NetworkPolicy, known: Option<&Vec<String>>) -> Result<Self, String> {
        let at = |k: &str| format!("networks.{slug}.policy.{k}");
        let pairs = |m: &std::collections::BTreeMap<String, String>, k: &str| {
            m.iter()
                .map(|(a, v)| Ok((a.clone(), amount(v, &at(k))?)))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Rules {
            assets: match &p.assets {
                AssetPolicy::Any => None,
                AssetPolicy::Only(list) => Some(list.clone()),
                AssetPolicy::Known => known.cloned(),
            },
            min_amount: p
                .min_amount
                .as_deref()
                .map(|v| amount(v, &at("min_amount")))
                .transpose()?,
            min_amounts: pairs(&p.min_amounts, "min_amounts")?,
            max_amount: p
                .max_amount
                .as_deref()
                .map(|v| amount(v, &at("max_amount")))
                .transpose()?,
            max_amounts: pairs(&p.max_amounts, "max_amounts")?,
            pay_to_allow: p.pay_to_allow.clone(),
            pay_to_deny: p.pay_to_deny.clone(),
            max_window: p.max_authorization_secs,
        })
    }

    fn bound(&self, asset: &str, own: &[(String, u128)], default: Option<u128>) -> Option<u128> {
        own.iter()
            .find(|(a, _)| same_address(a, asset))
            .map(|(_, v)| *v)
            .or(default)
    }
}

/// Addresses refused as payer or payee, shared with the task that reloads the file.
#[derive(Debug, Clone, Default)]
pub struct DenyList(Arc<RwLock<HashSet<String>>>);

/// The form an address is kept and looked up in: EVM hex lowercased, others as written.
fn canonical(address: &str) -> String {
    let a = address.trim();
    if a.starts_with("0x") || a.starts_with("0X") {
        a.to_ascii_lowercase()
    } else {
        a.to_string()
    }
}

impl DenyList {
    pub fn contains(&self, address: &str) -> bool {
        self.0
            .read()
            .map(|set| set.contains(&canonical(address)))
            .unwrap_or(false)
    }

    pub fn len(&self) -> usize {
        self.0.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn replace(&self, set: HashSet<String>) {
        if let Ok(mut current) = self.0.write() {
            *current = set;
        }
    }

    /// Reads the file: one address per line, `#` starts a comment.
    pub fn load(path: &Path) -> Result<HashSet<String>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the deny list {}: {e}", path.display()))?;
        Ok(text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(canonical)
            .collect())
    }

    /// Re-reads `path` whenever its modification time or size changes; a file that cannot be
    /// read keeps the list as it was (and says so), never an empty one.
    pub fn spawn_reload(&self, path: PathBuf, every: Duration) {
        let list = self.clone();
        tokio::spawn(async move {
            let stamp = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
            };
            let mut seen = stamp(&path);
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                match DenyList::load(&path) {
                    Ok(set) => {
                        tracing::info!(addresses = set.len(), "deny list reloaded");
                        list.replace(set);
                        seen = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "deny list not reloaded; keeping the old one")
                    }
                }
            }
        });
    }
}

pub struct Policy {
    networks: HashMap<String, Rules>,
    pub deny: DenyList,
    allow_self_payment: bool,
}

impl Policy {
    /// `networks`: (slug, CAIP-2 id, policy); `known`: each network's known stablecoins.
    pub fn new<'a>(
        settings: &PolicySettings,
        networks: impl IntoIterator<Item = (&'a str, &'a str, &'a NetworkPolicy)>,
        known: &HashMap<String, Vec<String>>,
    ) -> Result<Self, String> {
        let mut rules = HashMap::new();
        for (slug, id, p) in networks {
            rules.insert(id.to_string(), Rules::new(slug, p, known.get(id))?);
        }
        let deny = DenyList::default();
        if let Some(path) = &settings.deny_list_file {
            deny.replace(DenyList::load(path)?);
        }
        Ok(Policy {
            networks: rules,
            deny,
            allow_self_payment: settings.allow_self_payment,
        })
    }

    /// Whether `meta` may be verified or settled for `caller`; `window` is the authorization's
    /// (valid after, valid before) in unix seconds when the scheme has one.
    pub fn check(
        &self,
        meta: &PaymentMeta,
        window: Option<(u64, u64)>,
        caller: &Caller,
    ) -> Result<(), Rejection> {
        let refuse = |reason: &str, message: String| {
            Err(Rejection::new(reason)
                .with_message(message)
                .with_payer(meta.payer.clone()))
        };
        if !caller.may_pay(&meta.pay_to) {
            return refuse(
                reasons::PAY_TO_NOT_ALLOWED_FOR_KEY,
                format!("this API key does not settle for {}", meta.pay_to),
            );
        }
        if !self.allow_self_payment && same_address(&meta.payer, &meta.pay_to) {
            return refuse(
                reasons::SELF_PAYMENT,
                "the payer is the payee: such a payment moves nothing".into(),
            );
        }
        for (who, address) in [("payer", &meta.payer), ("payee", &meta.pay_to)] {
            if self.deny.contains(address) {
                return refuse(
                    reasons::ADDRESS_DENIED,
                    format!("the {who} is on this facilitator's deny list"),
                );
            }
        }
        let Some(rules) = self.networks.get(meta.network.as_str()) else {
            return Ok(());
        };
        if let Some(assets) = &rules.assets
            && !assets.iter().any(|a| same_address(a, &meta.asset))
        {
            return refuse(
                reasons::ASSET_NOT_ACCEPTED,
                format!("asset {} is not accepted on {}", meta.asset, meta.network),
            );
        }
        if !rules.pay_to_allow.is_empty()
            && !rules
                .pay_to_allow
                .iter()
                .any(|p| same_address(p, &meta.pay_to))
            || rules
                .pay_to_deny
                .iter()
                .any(|p| same_address(p, &meta.pay_to))
        {
            return refuse(
                reasons::PAY_TO_NOT_ACCEPTED,
                format!("payee {} is not served here", meta.pay_to),
            );
        }
        // An amount that is not a u128 is over any maximum and under any minimum (the plugin's
        // own check refuses it anyway; policy must not be the one to let it through).
        let parsed = meta.amount.trim().parse::<u128>().ok();
        let value = parsed.unwrap_or(u128::MAX);
        // `upto` (docs/schemes.md): the minimum holds for the charge the seller names, but a
        // charge of 0 sends nothing and costs no fee; the maximum holds for the signed
        // maximum, what the payer exposes (and what `/verify` was asked about), so a settle
        // cannot get past it by charging less than it could.
        let exposure = meta
            .max_amount
            .as_deref()
            .map_or(value, |max| max.trim().parse::<u128>().unwrap_or(u128::MAX));
        if let Some(max) = rules.bound(&meta.asset, &rules.max_amounts, rules.max_amount)
            && exposure > max
        {
            return refuse(
                reasons::AMOUNT_ABOVE_MAXIMUM,
                format!(
                    "amount {} is over this facilitator's maximum {max}",
                    meta.max_amount.as_deref().unwrap_or(&meta.amount)
                ),
            );
        }
        if let Some(min) = rules.bound(&meta.asset, &rules.min_amounts, rules.min_amount)
            && parsed.unwrap_or(0) < min
            && !meta.moves_nothing()
        {
            return refuse(
                reasons::AMOUNT_BELOW_MINIMUM,
                format!("amount {value} is under this facilitator's minimum {min}"),
            );
        }
        if let (Some(max), Some((after, before))) = (rules.max_window, window) {
            let start = after.max(unix_now());
            let length = before.saturating_sub(start);
            if length > max {
                return refuse(
                    reasons::WINDOW_TOO_LONG,
                    format!("the authorization is valid for {length} s; at most {max} s accepted"),
                );
            }
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NetworkId;

    fn meta(payer: &str, pay_to: &str, asset: &str, amount: &str) -> PaymentMeta {
        PaymentMeta {
            network: NetworkId::parse("eip155:8453").expect("id"),
            payer: payer.into(),
            replay_key: "k".into(),
            replay_reason: "r",
            pay_to: pay_to.into(),
            asset: asset.into(),
            amount: amount.into(),
            fingerprint: "f".into(),
            exclusive_key: None,
            max_amount: None,
            sender: None,
        }
    }

    fn policy(p: NetworkPolicy, known: &[&str]) -> Policy {
        let known: HashMap<String, Vec<String>> = [(
            "eip155:8453".to_string(),
            known.iter().map(|s| s.to_string()).collect(),
        )]
        .into();
        Policy::new(
            &PolicySettings::default(),
            [("base", "eip155:8453", &p)],
            &known,
        )
        .expect("valid")
    }

    fn reason(r: Result<(), Rejection>) -> String {
        r.err().map(|r| r.reason).unwrap_or_default()
    }

    #[test]
    fn each_rule_has_its_reason() {
        let p = policy(
            NetworkPolicy {
                min_amount: Some("100".into()),
                max_amounts: [("0xUSDC".to_string(), "5000".to_string())].into(),
                pay_to_deny: vec!["0xBAD".into()],
                max_authorization_secs: Some(600),
                ..NetworkPolicy::default()
            },
            &["0xusdc"],
        );
        let anyone = Caller::anonymous();
        let ok = meta("0xA", "0xB", "0xUsdc", "1000");
        assert_eq!(p.check(&ok, None, &anyone), Ok(()));
        let check = |m: &PaymentMeta| reason(p.check(m, None, &anyone));
        assert_eq!(
            check(&meta("0xAa", "0xaA", "0xusdc", "1000")),
            reasons::SELF_PAYMENT
        );
        assert_eq!(
            check(&meta("0xA", "0xB", "0xother", "1000")),
            reasons::ASSET_NOT_ACCEPTED
        );
        assert_eq!(
            check(&meta("0xA", "0xB", "0xusdc", "99")),
            reasons::AMOUNT_BELOW_MINIMUM
        );
        assert_eq!(
            check(&meta("0xA", "0xB", "0xusdc", "5001")),
            reasons::AMOUNT_ABOVE_MAXIMUM
        );
        assert_eq!(
            check(&meta(
                "0xA",
                "0xB",
                "0xusdc",
                "1000000000000000000000000000000000000000000"
            )),
            reasons::AMOUNT_ABOVE_MAXIMUM
        );
        assert_eq!(
            check(&meta("0xA", "0xbad", "0xusdc", "1000")),
            reasons::PAY_TO_NOT_ACCEPTED
        );
        let now = unix_now();
        assert_eq!(p.check(&ok, Some((0, now + 600)), &anyone), Ok(()));
        assert_eq!(
            reason(p.check(&ok, Some((0, now + 3600)), &anyone)),
            reasons::WINDOW_TOO_LONG
        );
        let tenant = Caller {
            key_id: Some("k".into()),
            pay_to: Some(vec!["0xC".into()]),
            ..Caller::default()
        };
        assert_eq!(
            reason(p.check(&ok, None, &tenant)),
            reasons::PAY_TO_NOT_ALLOWED_FOR_KEY
        );
        p.deny.replace(["0xa".to_string()].into());
        assert_eq!(check(&ok), reasons::ADDRESS_DENIED);
    }

    /// `upto`: the minimum is the charge's (a charge of 0 sends nothing and passes), the
    /// maximum is the signed maximum's.
    #[test]
    fn upto_bounds_the_charge_below_and_the_signed_maximum_above() {
        let p = policy(
            NetworkPolicy {
                min_amount: Some("100".into()),
                max_amount: Some("5000".into()),
                ..NetworkPolicy::default()
            },
            &["0xusdc"],
        );
        let anyone = Caller::anonymous();
        let upto = |charge: &str, max: &str| {
            let mut m = meta("0xA", "0xB", "0xusdc", charge);
            m.max_amount = Some(max.into());
            reason(p.check(&m, None, &anyone))
        };
        assert_eq!(upto("1000", "5000"), "");
        assert_eq!(upto("0", "5000"), "", "a charge of nothing");
        assert_eq!(upto("99", "5000"), reasons::AMOUNT_BELOW_MINIMUM);
        assert_eq!(
            upto("1000", "5001"),
            reasons::AMOUNT_ABOVE_MAXIMUM,
            "a small charge does not get a large authorization past the maximum"
        );
    }

    #[test]
    fn any_opens_the_asset_list_and_unknown_networks_pass() {
        let p = policy(
            NetworkPolicy {
                assets: AssetPolicy::Any,
                ..NetworkPolicy::default()
            },
            &["0xusdc"],
        );
        assert_eq!(
            p.check(
                &meta("0xA", "0xB", "0xother", "1"),
                None,
                &Caller::anonymous()
            ),
            Ok(())
        );
    }

    #[test]
    fn the_deny_file_reads_comments_and_cases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deny.txt");
        std::fs::write(&path, "# OFAC\n0xAbCd  # someone\n\nSo1anaAddr\n").expect("write");
        let set = DenyList::load(&path).expect("loads");
        assert!(set.contains("0xabcd") && set.contains("So1anaAddr") && set.len() == 2);
    }
}

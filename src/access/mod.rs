//! What makes the facilitator safe to expose: who may call it (API keys and scopes, `keys`),
//! how often (rate limits, `limits`), what it agrees to settle (operator policy, `policy`) and
//! how much it will spend doing so (cluster-wide budgets, `budget`). The HTTP layer asks
//! [`Access`] about a request before any handler runs; the facilitator asks [`Guard`] about a
//! payment before any RPC call. docs/access.md describes the whole surface.

pub mod budget;
pub mod keys;
pub mod limits;
pub mod policy;
pub mod settings;

use std::collections::HashMap;
use std::time::Duration;

pub use keys::{Caller, KeyCache, Scope};
pub use limits::{Class, Limited, Limits};

use crate::config::{Secret, Settings};
use crate::ledger::{LedgerError, NewKey, SharedLedger, StoredKey};
use crate::scheme::{PaymentMeta, Rejection};

/// Why a payment is not taken on: the payment's fault (answered 200 with its reason) or the
/// ledger's (a 5xx). Lets both travel with `?`.
#[derive(Debug)]
pub enum Refused {
    Reject(Rejection),
    Fault(LedgerError),
}

impl From<LedgerError> for Refused {
    fn from(e: LedgerError) -> Self {
        Refused::Fault(e)
    }
}

impl From<Rejection> for Refused {
    fn from(r: Rejection) -> Self {
        Refused::Reject(r)
    }
}

/// The money path's guard: operator policy and budgets.
pub struct Guard {
    pub policy: policy::Policy,
    pub budgets: budget::Budgets,
}

impl Guard {
    pub fn from_settings(
        settings: &Settings,
        ledger: SharedLedger,
        known_assets: &HashMap<String, Vec<String>>,
    ) -> Result<Self, String> {
        let networks: Vec<_> = settings
            .enabled_networks()
            .map(|(slug, n)| (slug.as_str(), n.network.as_str(), n))
            .collect();
        let policy = policy::Policy::new(
            &settings.policy,
            networks.iter().map(|(s, id, n)| (*s, *id, &n.policy)),
            known_assets,
        )?;
        if let Some(path) = &settings.policy.deny_list_file {
            policy.deny.spawn_reload(
                path.clone(),
                Duration::from_millis(settings.policy.deny_list_reload_ms.max(100)),
            );
        }
        let budgets = budget::Budgets::new(
            ledger,
            networks.iter().map(|(s, id, n)| (*s, *id, &n.budget)),
        )?;
        Ok(Guard { policy, budgets })
    }

    /// Operator policy: everything a payment must pass before we spend an RPC call on it,
    /// judged from its own fields with no I/O (it runs on every `/verify`). Budgets, which
    /// read the ledger, are judged where gas would be spent: `Budgets::reserve`.
    pub fn admit(
        &self,
        meta: &PaymentMeta,
        window: Option<(u64, u64)>,
        caller: &Caller,
    ) -> Result<(), Rejection> {
        self.policy.check(meta, window, caller)
    }
}

/// The request surface's gate: keys and rate limits.
pub struct Access {
    pub keys: KeyCache,
    pub limits: Limits,
    /// `auth.required`: keys needed even before one exists.
    pub required: bool,
    /// The legacy `server.receipts_token`: a bearer token with the `settlements` scope.
    pub receipts_token: Option<Secret>,
}

impl Access {
    pub fn from_settings(settings: &Settings, ledger: SharedLedger) -> Result<Self, String> {
        Ok(Access {
            keys: KeyCache::new(ledger, Duration::from_millis(settings.auth.cache_ms)),
            limits: Limits::new(&settings.rate_limit)?,
            required: settings.auth.required,
            receipts_token: settings.server.receipts_token.clone(),
        })
    }
}

/// A key as `keys create` / `keys rotate` hand it out: the token is shown this once.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: String,
    pub token: String,
}

/// What a new key may do.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub pay_to: Option<Vec<String>>,
    pub rate_per_second: Option<u32>,
}

pub async fn create_key(
    ledger: &SharedLedger,
    spec: &KeySpec,
    replaces: Option<&str>,
) -> anyhow::Result<Issued> {
    if spec.scopes.is_empty() {
        anyhow::bail!("a key needs at least one scope");
    }
    let (token, id) = keys::new_token().map_err(anyhow::Error::msg)?;
    let scopes: Vec<String> = spec.scopes.iter().map(|s| s.as_str().to_string()).collect();
    ledger
        .create_key(&NewKey {
            id: &id,
            name: &spec.name,
            prefix: &keys::token_prefix(&token),
            key_hash: &keys::hash_token(&token),
            scopes: &scopes,
            pay_to: spec.pay_to.as_deref(),
            rate_per_second: spec.rate_per_second,
            replaces,
        })
        .await?;
    Ok(Issued { id, token })
}

/// A new key with the old one's name, scopes, payees and rate; the old one is revoked at once
/// (clients switch to the new token, then the old one stops working on every replica within
/// `auth.cache_ms`).
pub async fn rotate_key(ledger: &SharedLedger, id: &str) -> anyhow::Result<Issued> {
    let Some(old) = ledger.key(id).await? else {
        anyhow::bail!("no key {id}");
    };
    if old.revoked_at.is_some() {
        anyhow::bail!("key {id} is revoked");
    }
    let spec = KeySpec {
        name: old.name.clone(),
        scopes: old.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        pay_to: old.pay_to.clone(),
        rate_per_second: old.rate_per_second,
    };
    let issued = create_key(ledger, &spec, Some(id)).await?;
    if !ledger.revoke_key(id).await?.applied() {
        anyhow::bail!(
            "key {id} was revoked meanwhile; the new key {} stands",
            issued.id
        );
    }
    Ok(issued)
}

/// One line of `keys list`.
pub fn describe(k: &StoredKey) -> String {
    format!(
        "{}\t{}\t{}…\t{}\t{}\t{}",
        k.id,
        k.name,
        k.prefix,
        k.scopes.join(","),
        k.pay_to
            .as_ref()
            .map(|p| p.join(","))
            .unwrap_or_else(|| "any payee".into()),
        if k.revoked_at.is_some() {
            "revoked"
        } else {
            "live"
        }
    )
}

//! Settings: compiled-in defaults (`config/default.toml`) → an optional file → environment
//! (`X402__SECTION__KEY`), validated once into typed [`Settings`].
//!
//! Networks are keyed by a slug (`base_sepolia`) with the CAIP-2 id as a field, so that every knob
//! has an environment name. Scheme-specific knobs stay in each network's `options` map and are
//! parsed by the plugin that owns them, so this module knows no chain. The network presets
//! (`presets`, `config/networks.toml`) are one more layer, under the file and the environment,
//! for the slugs those mention.

mod presets;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub use self::presets::{Preset, PresetAsset, presets};
use crate::protocol::NetworkId;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A value that never appears in logs or `check-config` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Secret(s.trim().to_string()))
    }
}

/// A list that may also be written as one comma-separated string, which is what an environment
/// variable can carry.
pub(crate) fn string_list<'de, D: Deserializer<'de>, T: From<String>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(T::from)
        .collect())
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub settlement: SettlementSettings,
    pub discovery: DiscoverySettings,
    pub console: ConsoleSettings,
    pub sessions: SessionSettings,
    #[serde(default)]
    pub auth: crate::access::settings::AuthSettings,
    #[serde(default)]
    pub rate_limit: crate::access::settings::RateLimitSettings,
    #[serde(default)]
    pub policy: crate::access::settings::PolicySettings,
    #[serde(default)]
    pub health: HealthSettings,
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub log_format: LogFormat,
    pub shutdown_grace_ms: u64,
    /// When set, `/settlements` requires `Authorization: Bearer <token>`.
    #[serde(default)]
    pub receipts_token: Option<Secret>,
    /// Settles in flight on this replica; past it a settle gets 503 with `Retry-After`.
    pub max_concurrent_settles: usize,
    /// Verifies in flight on this replica; past it a verify gets 503 with `Retry-After`.
    pub max_concurrent_verifies: usize,
    /// How long a client may take to send a request's headers (slow clients hold connections).
    pub header_read_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path` (embedded) or `postgres://…`. May carry a password, hence a secret.
    pub url: Secret,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettlementSettings {
    /// How long a `/settle` (and a `/verify`) may take from the request's arrival: a settle that
    /// cannot see its outcome by then answers `settlement_pending`.
    pub confirm_timeout_ms: u64,
    /// A settle holds its ledger row for `confirm_timeout_ms` plus this margin.
    pub lease_margin_ms: u64,
    /// How often the reconciler looks for unfinished rows.
    pub reconcile_interval_ms: u64,
    /// Lifetime of a signer lease; renewed every third of it.
    pub signer_lease_ttl_ms: u64,
}

/// The network health probe (`facilitator::health`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSettings {
    /// How often every served network is probed (RPC URLs, signer balances, leases).
    pub interval_ms: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings { interval_ms: 5000 }
    }
}

/// The operator console (`src/http/console`): HTML pages at `/console`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleSettings {
    /// Serve `/console`. Off by default: it shows payers, payees and signer balances.
    pub enabled: bool,
    /// Environment only (`X402__CONSOLE__TOKEN`): the admin secret the console asks for, as a
    /// bearer token or through its sign-in form. Unset: the console is open to anyone who can
    /// reach it (keep it on loopback then).
    #[serde(default)]
    pub token: Option<Secret>,
}

/// The bazaar discovery catalog (`src/discovery`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverySettings {
    /// Catalogue payments carrying `extensions.bazaar`, serve `/discovery/*`, advertise `bazaar`.
    pub enabled: bool,
    /// Sightings waiting to be catalogued; beyond this they are dropped (and counted), never
    /// waited for.
    pub queue_size: usize,
    /// A resource not paid for within this many days leaves the listings (and the database).
    pub age_out_days: u64,
    /// Let verifies catalogue too, and list resources that were only verified, never settled
    /// (after the paid ones). Off: only settles catalogue.
    pub list_unpaid: bool,
    /// Upper bound on catalogued resources.
    pub max_resources: u64,
    /// Catalogue resources on loopback, private or link-local hosts (`localhost`, `10.0.0.1`…).
    pub allow_private_hosts: bool,
}

/// Sessions (`src/sessions`): `/sessions/verify` and `/sessions/entitlement`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSettings {
    /// Serve the endpoints and advertise `sign-in-with-x` in `/supported`.
    pub enabled: bool,
    /// How far ahead of ours a seller's clock may be when it stamps `issuedAt`.
    pub clock_skew_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// CAIP-2 id, e.g. `eip155:84532`.
    pub network: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "exact", deserialize_with = "string_list")]
    pub schemes: Vec<String>,
    #[serde(default, deserialize_with = "string_list")]
    pub rpc_urls: Vec<String>,
    /// Set through the environment only; `signer_key_file` is the alternative.
    #[serde(default, deserialize_with = "string_list")]
    pub signer_keys: Vec<Secret>,
    #[serde(default)]
    pub signer_key_file: Option<PathBuf>,
    /// Also answer v1 requests under the network's v1 name, when it has one.
    #[serde(default = "yes")]
    pub v1: bool,
    /// What the operator accepts on this network (docs/access.md).
    #[serde(default)]
    pub policy: crate::access::settings::NetworkPolicy,
    /// Fee spend caps on this network, shared by every replica (docs/access.md).
    #[serde(default)]
    pub budget: crate::access::settings::NetworkBudget,
    /// A signer under this native balance (in the coin: ETH, SOL…) counts as out of gas: it is
    /// flagged in `/metrics` and `/ready`, and a network whose signers are all under it leaves
    /// `/supported` until one is refilled. Unset: any balance above zero.
    #[serde(default)]
    pub min_signer_balance: Option<String>,
    /// Scheme-specific options, parsed by the plugin (unknown keys fail its start-up).
    #[serde(flatten)]
    pub options: Map<String, Value>,
}

fn yes() -> bool {
    true
}

fn exact() -> Vec<String> {
    vec!["exact".into()]
}

impl NetworkSettings {
    pub fn network_id(&self) -> Result<NetworkId, ConfigError> {
        NetworkId::parse(&self.network)
            .ok_or_else(|| ConfigError::Invalid(format!("`{}` is not a CAIP-2 id", self.network)))
    }

    /// Signer keys from `signer_keys` and from `signer_key_file` (one key per line, `#` comments).
    pub fn load_signer_keys(&self) -> Result<Vec<Secret>, ConfigError> {
        let mut keys = self.signer_keys.clone();
        if let Some(path) = &self.signer_key_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
                path: path.clone(),
                source,
            })?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            );
        }
        Ok(keys)
    }
}

impl Settings {
    /// Defaults, then `file` if given, then `X402__…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("X402__"))
            .collect();
        let build = |presets: &str| {
            let mut builder = config::Config::builder()
                .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
                .add_source(config::File::from_str(presets, config::FileFormat::Toml));
            if let Some(path) = file {
                builder =
                    builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
            builder
                .add_source(
                    config::Environment::with_prefix("X402")
                        .prefix_separator("__")
                        .separator("__")
                        .try_parsing(true)
                        .source(Some(env.clone())),
                )
                .build()
        };
        // Which slugs the file and the environment mention decides which presets join in.
        let layer = presets::layer(&mentioned(&build("")?))?;
        let settings: Settings = build(&layer)?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that need no network: ids, ranges, references between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.server.body_limit_bytes < 1024 {
            return bad("server.body_limit_bytes must be at least 1024".into());
        }
        if self.server.request_timeout_ms <= self.settlement.confirm_timeout_ms {
            return bad(format!(
                "server.request_timeout_ms ({}) must exceed settlement.confirm_timeout_ms ({}), \
                 or a slow chain would cut settles off before they can answer settlement_pending",
                self.server.request_timeout_ms, self.settlement.confirm_timeout_ms
            ));
        }
        if self.settlement.confirm_timeout_ms >= 30_000 {
            return bad(format!(
                "settlement.confirm_timeout_ms ({}) must stay under the SDK clients' 30 s timeout",
                self.settlement.confirm_timeout_ms
            ));
        }
        if self.server.request_timeout_ms >= 30_000 {
            return bad(format!(
                "server.request_timeout_ms ({}) must stay under the SDK clients' 30 s timeout, or \
                 its answers arrive after the client gave up",
                self.server.request_timeout_ms
            ));
        }
        if self.server.max_concurrent_settles == 0
            || self.server.max_concurrent_verifies == 0
            || self.server.header_read_timeout_ms == 0
        {
            return bad(
                "server.max_concurrent_settles and server.header_read_timeout_ms must be positive"
                    .into(),
            );
        }
        if self.settlement.signer_lease_ttl_ms < 300 || self.settlement.reconcile_interval_ms == 0 {
            return bad(
                "settlement.signer_lease_ttl_ms must be ≥ 300 and reconcile_interval_ms positive"
                    .into(),
            );
        }
        if self.sessions.clock_skew_ms > 60_000 {
            return bad("sessions.clock_skew_ms must be at most 60000".into());
        }
        let d = &self.discovery;
        if d.queue_size == 0 || d.queue_size > 1_000_000 {
            return bad("discovery.queue_size must be between 1 and 1000000".into());
        }
        if !(1..=3650).contains(&d.age_out_days) {
            return bad("discovery.age_out_days must be between 1 and 3650".into());
        }
        if d.max_resources == 0 || d.max_resources > i64::MAX as u64 {
            return bad("discovery.max_resources must be positive".into());
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return bad(
                "database.url must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
        let mut seen = BTreeMap::new();
        for (slug, net) in &self.networks {
            let id = net.network_id()?;
            if !net.enabled {
                continue;
            }
            if let Some(other) = seen.insert(id.clone(), slug) {
                return bad(format!(
                    "networks.{slug} and networks.{other} both configure {id}"
                ));
            }
            if net.enabled && net.rpc_urls.is_empty() {
                return bad(format!("networks.{slug}.rpc_urls is empty"));
            }
            if net.schemes.is_empty() {
                return bad(format!("networks.{slug}.schemes is empty"));
            }
        }
        Ok(())
    }

    /// The networks that are switched on, with their slugs.
    pub fn enabled_networks(&self) -> impl Iterator<Item = (&String, &NetworkSettings)> {
        self.networks.iter().filter(|(_, n)| n.enabled)
    }

    /// The settings as JSON with every secret redacted, for `check-config`: keys, tokens and
    /// the database URL are `<redacted>`, and RPC URLs keep only their scheme and host
    /// (providers put API keys in the path, the query or the user name).
    pub fn redacted_json(&self) -> String {
        let mut shown = self.clone();
        for network in shown.networks.values_mut() {
            for url in &mut network.rpc_urls {
                *url = redact_url(url);
            }
        }
        serde_json::to_string_pretty(&shown).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

/// The network slugs a configuration mentions, and whether each has a signer key (a preset is
/// switched on by its key).
fn mentioned(built: &config::Config) -> Vec<(String, bool)> {
    #[derive(Deserialize)]
    struct Keys {
        #[serde(default, deserialize_with = "string_list")]
        signer_keys: Vec<String>,
        #[serde(default)]
        signer_key_file: Option<String>,
    }
    let Ok(networks) = built.get_table("networks") else {
        return Vec::new();
    };
    networks
        .into_iter()
        .map(|(slug, value)| {
            let keyed = value
                .try_deserialize::<Keys>()
                .is_ok_and(|k| !k.signer_keys.is_empty() || k.signer_key_file.is_some());
            (slug, keyed)
        })
        .collect()
}

/// A URL with its path and query hidden (`https://host/<redacted>`), and any user name dropped.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let hidden = rest.len() > host.len();
    match (scheme.is_empty(), hidden) {
        (true, _) => "<rpc-url>".into(),
        (false, true) => format!("{scheme}://{host}/<redacted>"),
        (false, false) => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults are valid");
        assert!(s.database.url.expose().starts_with("sqlite:"));
        assert!(s.settlement.confirm_timeout_ms < 30_000);
    }

    #[test]
    fn env_overrides_and_lists_from_strings() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("X402__SERVER__PORT", "9999"),
                ("X402__NETWORKS__LOCAL__NETWORK", "eip155:31337"),
                (
                    "X402__NETWORKS__LOCAL__RPC_URLS",
                    "http://127.0.0.1:1,http://127.0.0.1:2",
                ),
                ("X402__NETWORKS__LOCAL__SIGNER_KEYS", "0xaa, 0xbb"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.server.port, 9999);
        let local = &s.networks["local"];
        assert_eq!(local.rpc_urls.len(), 2);
        assert_eq!(
            local.signer_keys,
            vec![Secret::new("0xaa"), Secret::new("0xbb")]
        );
        let printed = s.redacted_json();
        assert!(!printed.contains("0xaa") && printed.contains("<redacted>"));
    }

    #[test]
    fn redacts_keys_in_urls() {
        assert_eq!(
            redact_url("https://base.g.alchemy.com/v2/SECRET"),
            "https://base.g.alchemy.com/<redacted>"
        );
        assert_eq!(
            redact_url("https://user:pw@host:8545"),
            "https://host:8545/<redacted>"
        );
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(redact_url("https://rpc?key=1"), "https://rpc/<redacted>");
    }

    #[test]
    fn rejects_bad_network_id() {
        let err = Settings::load_with_env(
            None,
            env(&[
                ("X402__NETWORKS__X__NETWORK", "base"),
                ("X402__NETWORKS__X__RPC_URLS", "http://x"),
            ]),
        )
        .expect_err("not CAIP-2");
        assert!(err.to_string().contains("CAIP-2"));
    }
}

//! Network presets (`config/networks.toml`): every network of the official SDKs' default-asset
//! tables, compiled in. A preset is not a configured network until its slug is mentioned
//! (`X402__NETWORKS__POLYGON__SIGNER_KEYS=…`, or `[networks.polygon]` in a file); then it is a
//! configuration layer under the operator's own settings, giving the network its CAIP-2 id, RPC
//! URL and schemes, and switching it on exactly when it has a signer key. The assets, v1 names
//! and token details are reference data (README, the consistency tests): the facilitator itself
//! needs no asset table (it trusts `extra.name`/`version`, which the signature and simulation
//! then hold to the chain).

use std::collections::BTreeMap;

use serde::Deserialize;

const PRESETS: &str = include_str!("../../config/networks.toml");

/// One network of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    /// CAIP-2 id.
    pub network: String,
    /// The legacy (x402 v1) name, where the SDKs have one.
    pub v1_name: Option<String>,
    pub testnet: bool,
    pub rpc_urls: Vec<String>,
    pub assets: Vec<PresetAsset>,
}

/// A default asset (the first is the SDK's `$` price default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetAsset {
    /// EVM token address (EIP-55) or Solana mint (base58).
    pub address: String,
    pub symbol: String,
    pub decimals: u8,
    /// EVM: the token's EIP-712 domain, what sellers put in `extra.name`/`extra.version`.
    pub eip712_name: Option<String>,
    pub eip712_version: Option<String>,
    /// EVM: `eip3009` or `permit2`.
    pub transfer_method: Option<String>,
    /// EVM: the token has EIP-2612 `permit` (usable with `eip2612GasSponsoring`).
    #[serde(default)]
    pub eip2612: bool,
    /// Solana: the SPL Token or Token-2022 program.
    pub token_program: Option<String>,
}

/// Every preset, by slug.
pub fn presets() -> Result<BTreeMap<String, Preset>, config::ConfigError> {
    config::Config::builder()
        .add_source(config::File::from_str(PRESETS, config::FileFormat::Toml))
        .build()?
        .try_deserialize()
}

/// The schemes a preset serves: both EVM schemes, or Solana `exact`.
pub fn schemes(network: &str) -> &'static [&'static str] {
    if network.starts_with("eip155:") {
        &["exact", "upto"]
    } else {
        &["exact"]
    }
}

fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The configuration layer for the mentioned `slugs` that have a preset: `(slug, has a key)`.
pub fn layer(slugs: &[(String, bool)]) -> Result<String, config::ConfigError> {
    let all = presets()?;
    let mut out = String::new();
    for (slug, keyed) in slugs {
        let Some(p) = all.get(slug) else { continue };
        let urls: Vec<String> = p.rpc_urls.iter().map(|u| toml_string(u)).collect();
        let schemes: Vec<String> = schemes(&p.network).iter().map(|s| toml_string(s)).collect();
        out.push_str(&format!(
            "[networks.{slug}]\nnetwork = {}\nrpc_urls = [{}]\nschemes = [{}]\nenabled = {keyed}\n\n",
            toml_string(&p.network),
            urls.join(", "),
            schemes.join(", "),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use alloy::primitives::Address;

    use super::*;
    use crate::config::Settings;
    use crate::protocol::NetworkId;
    use crate::protocol::network::{V1_NAMES, caip2_to_v1, v1_to_caip2};

    /// The transfer methods our EVM `exact` serves, and the scheme that serves each.
    fn serving_scheme(method: &str) -> Option<&'static str> {
        match method {
            "eip3009" | "permit2" => Some("exact"),
            _ => None,
        }
    }

    #[test]
    fn the_table_is_consistent() {
        let all = presets().expect("config/networks.toml parses");
        assert!(all.len() >= 29, "{} presets", all.len());
        let builtin: BTreeSet<(&str, &str)> = crate::schemes::builtin()
            .iter()
            .map(|f| (f.namespace(), f.scheme()))
            .collect();
        let mut ids = BTreeSet::new();
        for (slug, p) in &all {
            let id = NetworkId::parse(&p.network)
                .unwrap_or_else(|| panic!("{slug}: `{}` is not CAIP-2", p.network));
            assert!(ids.insert(p.network.clone()), "{slug}: {} twice", p.network);
            assert!(!p.assets.is_empty(), "{slug}: no default asset");
            assert!(
                !p.rpc_urls.is_empty() && p.rpc_urls.iter().all(|u| u.starts_with("https://")),
                "{slug}: public RPC URLs are https"
            );
            for scheme in schemes(&p.network) {
                assert!(
                    builtin.contains(&(id.namespace(), *scheme)),
                    "{slug}: no {scheme} plugin for {}",
                    id.namespace()
                );
            }
            match id.namespace() {
                "eip155" => {
                    assert!(id.eip155_chain_id().is_some(), "{slug}");
                    for a in &p.assets {
                        Address::parse_checksummed(&a.address, None).unwrap_or_else(|e| {
                            panic!("{slug}: {} is not EIP-55 checksummed: {e}", a.address)
                        });
                        assert!(a.decimals > 0 && a.decimals <= 36, "{slug}: decimals");
                        assert!(
                            a.eip712_name.as_deref().is_some_and(|n| !n.is_empty())
                                && a.eip712_version.as_deref().is_some_and(|v| !v.is_empty()),
                            "{slug}: {} has no EIP-712 domain",
                            a.symbol
                        );
                        let method = a.transfer_method.as_deref().unwrap_or_default();
                        let scheme = serving_scheme(method).unwrap_or_else(|| {
                            panic!("{slug}: transfer method `{method}` is not one we serve")
                        });
                        assert!(schemes(&p.network).contains(&scheme), "{slug}");
                        assert!(
                            a.token_program.is_none(),
                            "{slug}: EVM has no token program"
                        );
                    }
                }
                "solana" => {
                    for a in &p.assets {
                        let mint = bs58::decode(&a.address).into_vec().unwrap_or_default();
                        assert_eq!(mint.len(), 32, "{slug}: {} is no mint", a.address);
                        assert!(
                            matches!(
                                a.token_program.as_deref(),
                                Some("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
                                    | Some("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
                            ),
                            "{slug}: token program"
                        );
                        assert!(a.transfer_method.is_none() && a.eip712_name.is_none());
                    }
                }
                other => panic!("{slug}: namespace {other} is served by no plugin"),
            }
            // v1 names map both ways.
            assert_eq!(
                p.v1_name.as_deref(),
                caip2_to_v1(&id),
                "{slug}: v1 name of {id}"
            );
            if let Some(name) = &p.v1_name {
                assert_eq!(v1_to_caip2(name), Some(id.clone()), "{slug}: {name}");
            }
        }
        // Every v1 name of a preset network is the preset's.
        for (name, caip2) in V1_NAMES {
            if let Some(p) = all.values().find(|p| p.network == *caip2) {
                assert_eq!(p.v1_name.as_deref(), Some(*name), "{caip2}");
            }
        }
    }

    #[test]
    fn a_key_is_all_a_preset_needs() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let s =
            Settings::load_with_env(None, env(&[("X402__NETWORKS__POLYGON__SIGNER_KEYS", key)]))
                .expect("valid");
        let polygon = &s.networks["polygon"];
        assert!(polygon.enabled);
        assert_eq!(polygon.network, "eip155:137");
        assert_eq!(polygon.schemes, vec!["exact", "upto"]);
        assert!(polygon.rpc_urls[0].starts_with("https://"));
        crate::app::validate_networks(&s).expect("the preset passes the plugins' checks");

        let s = Settings::load_with_env(
            None,
            env(&[(
                "X402__NETWORKS__SOLANA__SIGNER_KEY_FILE",
                "/nonexistent/keys",
            )]),
        )
        .expect("valid");
        assert!(s.networks["solana"].enabled, "a key file counts as a key");
        assert_eq!(s.networks["solana"].schemes, vec!["exact"]);

        // Mentioned without a key: configured but off; unmentioned presets are absent.
        let s = Settings::load_with_env(
            None,
            env(&[
                ("X402__NETWORKS__BASE__SIGNER_KEYS", ""),
                ("X402__NETWORKS__CELO__RPC_URLS", "https://celo.example"),
            ]),
        )
        .expect("valid");
        assert!(!s.networks["base"].enabled);
        assert!(!s.networks["celo"].enabled);
        assert_eq!(s.networks["celo"].rpc_urls, vec!["https://celo.example"]);
        assert!(!s.networks.contains_key("polygon"));

        // The operator's settings win over the preset.
        let s = Settings::load_with_env(
            None,
            env(&[
                ("X402__NETWORKS__MEZO__SIGNER_KEYS", key),
                ("X402__NETWORKS__MEZO__ENABLED", "false"),
                ("X402__NETWORKS__MEZO__SCHEMES", "exact"),
            ]),
        )
        .expect("valid");
        assert!(!s.networks["mezo"].enabled);
        assert_eq!(s.networks["mezo"].schemes, vec!["exact"]);
    }
}

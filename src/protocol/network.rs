//! Network identifiers: CAIP-2 ids (v2) and the legacy v1 names (digest §7.2, §7.3).

use std::fmt;

/// A CAIP-2 network id such as `eip155:8453` (`namespace:reference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(String);

impl NetworkId {
    /// Accepts a CAIP-2 id: a non-empty namespace and reference around one `:`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, reference) = s.split_once(':')?;
        let ok_ns = !ns.is_empty()
            && ns.len() <= 8
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_ref = !reference.is_empty()
            && reference.len() <= 64
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (ok_ns && ok_ref).then(|| NetworkId(s.to_string()))
    }

    pub fn eip155(chain_id: u64) -> Self {
        NetworkId(format!("eip155:{chain_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map(|(ns, _)| ns).unwrap_or_default()
    }

    /// The family pattern used as a key of `/supported.signers`, e.g. `eip155:*`.
    pub fn family_pattern(&self) -> String {
        format!("{}:*", self.namespace())
    }

    /// The numeric chain id of an `eip155:` network.
    pub fn eip155_chain_id(&self) -> Option<u64> {
        self.0.strip_prefix("eip155:")?.parse().ok()
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// v1 network names with their CAIP-2 ids. Chain ids follow the TS/Go tables where Python
/// disagrees (digest §7.2).
pub const V1_NAMES: &[(&str, &str)] = &[
    ("ethereum", "eip155:1"),
    ("sepolia", "eip155:11155111"),
    ("abstract", "eip155:2741"),
    ("abstract-testnet", "eip155:11124"),
    ("base-sepolia", "eip155:84532"),
    ("base", "eip155:8453"),
    ("avalanche-fuji", "eip155:43113"),
    ("avalanche", "eip155:43114"),
    ("iotex", "eip155:4689"),
    ("sei", "eip155:1329"),
    ("sei-testnet", "eip155:1328"),
    ("polygon", "eip155:137"),
    ("polygon-amoy", "eip155:80002"),
    ("peaq", "eip155:3338"),
    ("story", "eip155:1514"),
    ("educhain", "eip155:41923"),
    ("skale-base-sepolia", "eip155:324705682"),
    ("megaeth", "eip155:4326"),
    ("monad", "eip155:143"),
    ("stable", "eip155:988"),
    ("stable-testnet", "eip155:2201"),
    // Added to `@x402/evm`'s EVM_NETWORK_CHAIN_ID_MAP since the digest (2.27).
    ("celo", "eip155:42220"),
    ("flare", "eip155:14"),
    ("solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
    ("solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
    ("solana-testnet", "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z"),
];

/// The CAIP-2 id of a v1 network name.
pub fn v1_to_caip2(name: &str) -> Option<NetworkId> {
    V1_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, id)| NetworkId::parse(id))
}

/// The v1 name of a CAIP-2 id, when v1 has one.
pub fn caip2_to_v1(id: &NetworkId) -> Option<&'static str> {
    V1_NAMES
        .iter()
        .find(|(_, c)| *c == id.as_str())
        .map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_caip2_and_rejects_garbage() {
        let id = NetworkId::parse("eip155:84532").expect("valid");
        assert_eq!(id.eip155_chain_id(), Some(84532));
        assert_eq!(id.family_pattern(), "eip155:*");
        assert!(NetworkId::parse("base-sepolia").is_none());
        assert!(NetworkId::parse(":1").is_none());
        assert!(NetworkId::parse("eip155:").is_none());
        assert!(NetworkId::parse("EIP155:1").is_none());
        assert_eq!(
            NetworkId::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")
                .map(|n| n.eip155_chain_id()),
            Some(None)
        );
    }

    #[test]
    fn v1_names_round_trip() {
        let id = v1_to_caip2("base-sepolia").expect("known");
        assert_eq!(id.as_str(), "eip155:84532");
        assert_eq!(caip2_to_v1(&id), Some("base-sepolia"));
        assert!(v1_to_caip2("nope").is_none());
    }
}

//! The registry of built scheme handlers, keyed by (x402 version, scheme, network as written on
//! the wire), and the precomputed `/supported` answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::SchemeHandler;
use crate::protocol::{SupportedKind, SupportedResponse};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemeKey {
    pub x402_version: u8,
    pub scheme: String,
    pub network: String,
}

#[derive(Default)]
pub struct SchemeRegistry {
    handlers: HashMap<SchemeKey, Arc<dyn SchemeHandler>>,
    kinds: Vec<SupportedKind>,
    signers: BTreeMap<String, Vec<String>>,
}

/// Why no handler answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Nothing is configured on that network for that version.
    Network,
    /// The network is served, but not with that scheme.
    Scheme,
}

impl SchemeRegistry {
    /// Adds a handler under each of its kinds. A kind claimed twice is a configuration error.
    pub fn register(&mut self, handler: Arc<dyn SchemeHandler>) -> Result<(), String> {
        let description = handler.describe();
        for kind in description.kinds {
            let key = SchemeKey {
                x402_version: kind.x402_version,
                scheme: kind.scheme.clone(),
                network: kind.network.clone(),
            };
            if self.handlers.insert(key, handler.clone()).is_some() {
                return Err(format!(
                    "two handlers for v{} {} on {}",
                    kind.x402_version, kind.scheme, kind.network
                ));
            }
            self.kinds.push(kind);
        }
        for (family, address) in description.signers {
            let list = self.signers.entry(family).or_default();
            if !list.contains(&address) {
                list.push(address);
            }
        }
        Ok(())
    }

    pub fn lookup(
        &self,
        x402_version: u8,
        scheme: &str,
        network: &str,
    ) -> Result<&Arc<dyn SchemeHandler>, Miss> {
        let key = SchemeKey {
            x402_version,
            scheme: scheme.to_string(),
            network: network.to_string(),
        };
        if let Some(handler) = self.handlers.get(&key) {
            return Ok(handler);
        }
        let network_known = self
            .handlers
            .keys()
            .any(|k| k.x402_version == x402_version && k.network == network);
        Err(if network_known {
            Miss::Scheme
        } else {
            Miss::Network
        })
    }

    pub fn supported(&self, extensions: Vec<String>) -> SupportedResponse {
        let mut kinds = self.kinds.clone();
        kinds.sort_by(|a, b| {
            (b.x402_version, &a.network, &a.scheme).cmp(&(a.x402_version, &b.network, &b.scheme))
        });
        SupportedResponse {
            kinds,
            extensions,
            signers: self.signers.clone(),
        }
    }

    /// The CAIP-2 networks served (v2 keys name them; v1 names map to the same handlers).
    pub fn networks(&self) -> Vec<String> {
        let mut networks: Vec<String> = self
            .handlers
            .keys()
            .filter(|k| k.x402_version == 2)
            .map(|k| k.network.clone())
            .collect();
        networks.sort();
        networks.dedup();
        networks
    }

    /// The CAIP-2 networks whose handler can sign right now.
    pub fn signing_networks(&self) -> Vec<String> {
        let mut networks: Vec<String> = self
            .handlers
            .iter()
            .filter(|(k, h)| k.x402_version == 2 && h.can_sign())
            .map(|(k, _)| k.network.clone())
            .collect();
        networks.sort();
        networks.dedup();
        networks
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

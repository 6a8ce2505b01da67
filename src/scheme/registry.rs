//! The registry of built scheme handlers, keyed by (x402 version, scheme, network as written on
//! the wire), and the precomputed `/supported` answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Deadline, NetworkProbe, SchemeHandler};
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
    extensions: Vec<String>,
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
        for extension in description.extensions {
            if !self.extensions.contains(&extension) {
                self.extensions.push(extension);
            }
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

    /// The `/supported` answer: `extensions` (the core's own) and those of served handlers.
    pub fn supported(&self, mut extensions: Vec<String>) -> SupportedResponse {
        for extension in &self.extensions {
            if !extensions.contains(extension) {
                extensions.push(extension.clone());
            }
        }
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

    /// A live probe of every served network (CAIP-2 id → what its plugin found), all at once,
    /// bounded by `deadline`. A network served by several schemes is probed through each; the
    /// RPC and signer views are merged by URL and address, so each is listed once.
    pub async fn probe(&self, deadline: Deadline) -> BTreeMap<String, NetworkProbe> {
        // Handlers are told apart by address (one handler serves v1 and v2 kinds).
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut jobs = Vec::new();
        for (key, handler) in &self.handlers {
            let identity = (
                key.network.clone(),
                Arc::as_ptr(handler) as *const () as usize,
            );
            if key.x402_version != 2 || seen.contains(&identity) {
                continue;
            }
            seen.push(identity);
            let (network, handler) = (key.network.clone(), handler.clone());
            jobs.push(async move { (network, handler.probe(deadline).await) });
        }
        let mut out: BTreeMap<String, NetworkProbe> = BTreeMap::new();
        for (network, probe) in futures_util::future::join_all(jobs).await {
            let merged = out.entry(network).or_default();
            for rpc in probe.rpc {
                if !merged
                    .rpc
                    .iter()
                    .any(|r| r.url_redacted == rpc.url_redacted)
                {
                    merged.rpc.push(rpc);
                }
            }
            for signer in probe.signers {
                if !merged.signers.iter().any(|s| s.address == signer.address) {
                    merged.signers.push(signer);
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

//! What each served network can do right now, looked at every few seconds by a background task
//! (a live probe of every RPC URL and signer, the ledger's signer leases, the rows by state):
//! `/supported` leaves out a network that cannot settle (every RPC failing, no signer with gas,
//! no lease held by any replica) until it recovers, so SDKs choosing among facilitators route
//! elsewhere; `/ready` reports every check; `/metrics` shows balances and RPC latency.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Facilitator;
use crate::ledger::now_ms;
use crate::protocol::{NetworkId, SupportedResponse};
use crate::scheme::{Deadline, NetworkProbe};

/// One network's verdict, from the last probe.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkHealth {
    /// At least one RPC URL answered.
    pub rpc: bool,
    /// At least one signer's native balance is at or above the threshold.
    pub gas: bool,
    /// Some replica holds a lease on one of its keys (networks without leases: always).
    pub lease: bool,
    /// Signers under the low-balance threshold.
    pub low_balance: Vec<String>,
    pub checked_at_ms: i64,
    #[serde(skip)]
    pub probe: NetworkProbe,
}

impl NetworkHealth {
    pub fn serving(&self) -> bool {
        self.rpc && self.gas && self.lease
    }
}

/// The board every reader shares; empty until the first probe (then everything is served).
#[derive(Debug, Default)]
pub struct HealthBoard {
    networks: RwLock<BTreeMap<String, NetworkHealth>>,
    rows: RwLock<BTreeMap<String, i64>>,
}

impl HealthBoard {
    pub fn networks(&self) -> BTreeMap<String, NetworkHealth> {
        self.networks.read().map(|n| n.clone()).unwrap_or_default()
    }

    pub fn rows(&self) -> BTreeMap<String, i64> {
        self.rows.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether `network` (CAIP-2 or a v1 name) is served right now.
    pub fn serving(&self, network: &str) -> bool {
        let id = NetworkId::parse(network)
            .or_else(|| crate::protocol::network::v1_to_caip2(network))
            .map(|id| id.to_string())
            .unwrap_or_else(|| network.to_string());
        self.networks
            .read()
            .map(|n| n.get(&id).is_none_or(NetworkHealth::serving))
            .unwrap_or(true)
    }

    /// `/supported` without the networks that cannot settle now.
    pub fn filter(&self, supported: &SupportedResponse) -> SupportedResponse {
        let mut out = supported.clone();
        out.kinds.retain(|k| self.serving(&k.network));
        out
    }
}

/// Health settings: how often, and under which native balance a signer counts as out of gas.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub interval: Duration,
    /// Per CAIP-2 network, in the chain's smallest unit (wei, lamports).
    pub min_balance: BTreeMap<String, u128>,
}

fn above(balance: &Option<String>, min: u128) -> bool {
    balance
        .as_deref()
        .and_then(|b| b.parse::<u128>().ok())
        .is_some_and(|b| b >= min.max(1))
}

/// Probes every served network once and posts the verdicts.
pub async fn check(fac: &Facilitator, settings: &HealthSettings) {
    let deadline = Deadline::after(settings.interval.min(Duration::from_secs(4)));
    let probes = fac.probe_networks(deadline).await;
    let leases = fac.ledger().live_lease_networks().await;
    let mut verdicts = BTreeMap::new();
    for (network, probe) in probes {
        let min = settings.min_balance.get(&network).copied().unwrap_or(1);
        let low_balance: Vec<String> = probe
            .signers
            .iter()
            .filter(|s| !above(&s.balance, min))
            .map(|s| s.address.clone())
            .collect();
        // Networks whose keys are leased (EVM nonce lanes) need a live lease somewhere; the
        // others (Solana fee payers) co-sign on every replica.
        let leased = probe.signers.iter().any(|s| s.in_flight.is_some());
        let lease = match &leases {
            Ok(held) => !leased || held.iter().any(|n| n == &network),
            Err(_) => true,
        };
        let health = NetworkHealth {
            rpc: probe.reachable(),
            gas: probe.signers.iter().any(|s| above(&s.balance, min)),
            lease,
            low_balance,
            checked_at_ms: now_ms(),
            probe,
        };
        verdicts.insert(network, health);
    }
    for (network, h) in &verdicts {
        if !h.serving() {
            tracing::warn!(
                network,
                rpc = h.rpc,
                gas = h.gas,
                lease = h.lease,
                "network left out of /supported until it recovers"
            );
        }
    }
    if let Ok(mut board) = fac.health.networks.write() {
        *board = verdicts;
    }
    if let Ok(rows) = fac.ledger().rows_by_state().await
        && let Ok(mut board) = fac.health.rows.write()
    {
        *board = rows.into_iter().collect();
    }
}

pub fn spawn(
    fac: Arc<Facilitator>,
    settings: HealthSettings,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => check(&fac, &settings).await,
            }
        }
    })
}

/// Prometheus lines for the board: RPC up and latency per redacted URL, signer balances and
/// the low-balance flag, rows by state.
pub fn render(board: &HealthBoard) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let networks = board.networks();
    let _ = writeln!(
        out,
        "# HELP x402_network_serving 1 while the network is advertised in /supported.\n\
         # TYPE x402_network_serving gauge"
    );
    for (n, h) in &networks {
        let _ = writeln!(
            out,
            "x402_network_serving{{network=\"{n}\"}} {}",
            u8::from(h.serving())
        );
    }
    let _ = writeln!(
        out,
        "# HELP x402_rpc_up 1 when the RPC URL (scheme and host only) answered the last probe.\n\
         # TYPE x402_rpc_up gauge\n\
         # HELP x402_rpc_latency_seconds The last probe's round trip per RPC URL.\n\
         # TYPE x402_rpc_latency_seconds gauge"
    );
    for (n, h) in &networks {
        for r in &h.probe.rpc {
            let url = r.url_redacted.replace('"', "");
            let _ = writeln!(
                out,
                "x402_rpc_up{{network=\"{n}\",url=\"{url}\"}} {}\n\
                 x402_rpc_latency_seconds{{network=\"{n}\",url=\"{url}\"}} {}",
                u8::from(r.ok),
                r.latency_ms as f64 / 1000.0
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP x402_signer_balance Native balance per signer, in the coin (ETH, SOL…).\n\
         # TYPE x402_signer_balance gauge\n\
         # HELP x402_signer_low_balance 1 when the signer is under the network's threshold.\n\
         # TYPE x402_signer_low_balance gauge"
    );
    for (n, h) in &networks {
        for s in &h.probe.signers {
            let coin = s
                .balance
                .as_deref()
                .and_then(|b| b.parse::<f64>().ok())
                .map(|b| b / 10f64.powi(i32::from(s.decimals)))
                .unwrap_or(0.0);
            let low = h.low_balance.contains(&s.address);
            let _ = writeln!(
                out,
                "x402_signer_balance{{network=\"{n}\",signer=\"{}\"}} {coin}\n\
                 x402_signer_low_balance{{network=\"{n}\",signer=\"{}\"}} {}",
                s.address,
                s.address,
                u8::from(low)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP x402_ledger_rows Settlement rows by state.\n# TYPE x402_ledger_rows gauge"
    );
    for (state, n) in board.rows() {
        let _ = writeln!(out, "x402_ledger_rows{{state=\"{state}\"}} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_amounts_in_smallest_units() {
        use crate::access::settings::decimal_units;
        assert_eq!(decimal_units("0.01", 18), Ok(10_000_000_000_000_000));
        assert_eq!(decimal_units("1", 9), Ok(1_000_000_000));
        assert!(decimal_units("0.0000000001", 9).is_err());
        assert!(decimal_units("x", 9).is_err());
        assert!(above(&Some("10".into()), 10) && !above(&Some("9".into()), 10));
        assert!(!above(&Some("0".into()), 0), "zero never counts as gas");
        assert!(!above(&None, 1));
    }
}

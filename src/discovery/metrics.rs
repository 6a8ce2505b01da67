//! Discovery's counters, appended to `GET /metrics`: what became of every sighting, so that an
//! operator (and the hostile tests) can see a poisoning attempt refused for the right reason.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every outcome a sighting can have, in rendering order.
pub const OUTCOMES: &[&str] = &[
    "inserted",
    "updated",
    "kept_paid",
    "full",
    "dropped",
    "error",
    "malformed",
    "too_large",
    "schema_rejected",
    "info_mismatch",
    "bad_shape",
    "private_host",
    "bad_resource",
    "bad_requirements",
];

pub struct DiscoveryMetrics {
    counts: Vec<AtomicU64>,
    pub pruned: AtomicU64,
}

impl Default for DiscoveryMetrics {
    fn default() -> Self {
        DiscoveryMetrics {
            counts: OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
            pruned: AtomicU64::new(0),
        }
    }
}

impl DiscoveryMetrics {
    /// Counts one sighting under `outcome` (one of [`OUTCOMES`]).
    pub fn count(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let name = "x402_discovery_sightings_total";
        let _ = writeln!(
            out,
            "# HELP {name} Payments carrying extensions.bazaar, by what cataloguing did with them.\n\
             # TYPE {name} counter"
        );
        for (label, value) in OUTCOMES.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}{{outcome=\"{label}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let pruned = "x402_discovery_pruned_total";
        let _ = writeln!(
            out,
            "# HELP {pruned} Catalogued resources removed (aged out or over the size bound).\n\
             # TYPE {pruned} counter\n{pruned} {}",
            self.pruned.load(Ordering::Relaxed)
        );
        out
    }
}

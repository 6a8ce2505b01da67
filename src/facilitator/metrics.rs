//! Business counters, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::FacilitatorError;
use crate::protocol::{SettleResponse, VerifyResponse, reason};

#[derive(Default)]
pub struct Metrics {
    pub verify_valid: AtomicU64,
    pub verify_invalid: AtomicU64,
    pub verify_faults: AtomicU64,
    pub settle_success: AtomicU64,
    pub settle_failed: AtomicU64,
    pub settle_pending: AtomicU64,
    pub settle_duplicate: AtomicU64,
    pub settle_faults: AtomicU64,
    pub reconcile_settled: AtomicU64,
    pub reconcile_failed: AtomicU64,
    pub reconcile_released: AtomicU64,
    pub reconcile_pending: AtomicU64,
    pub reconcile_errors: AtomicU64,
    /// Settled rows whose block left the chain (a reorg) and were reconciled again.
    pub reorged: AtomicU64,
    /// Settles refused because too many were in flight (503 with `Retry-After`).
    pub settle_shed: AtomicU64,
    /// Settles this replica handed to one holding a key, and hand-offs it settled for others.
    pub handed_off: AtomicU64,
    pub taken_over: AtomicU64,
    /// Transactions that had to be signed again because their nonce was taken.
    pub nonce_conflicts: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn count_verify(&self, answer: &Result<VerifyResponse, FacilitatorError>) {
        inc(match answer {
            Ok(a) if a.is_valid => &self.verify_valid,
            Ok(_) => &self.verify_invalid,
            Err(_) => &self.verify_faults,
        });
    }

    pub fn count_settle(&self, answer: &Result<SettleResponse, FacilitatorError>) {
        inc(match answer {
            Ok(a) if a.success => &self.settle_success,
            Ok(a) if a.error_reason.as_deref() == Some(reason::SETTLEMENT_PENDING) => {
                &self.settle_pending
            }
            Ok(a) if a.error_reason.as_deref() == Some(reason::DUPLICATE_SETTLEMENT) => {
                &self.settle_duplicate
            }
            Ok(_) => &self.settle_failed,
            Err(_) => &self.settle_faults,
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, help: &str, series: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (label, value) in series {
                let _ = writeln!(
                    out,
                    "{name}{{outcome=\"{label}\"}} {}",
                    value.load(Ordering::Relaxed)
                );
            }
        };
        family(
            "x402_verify_total",
            "POST /verify answers by outcome.",
            &[
                ("valid", &self.verify_valid),
                ("invalid", &self.verify_invalid),
                ("fault", &self.verify_faults),
            ],
        );
        family(
            "x402_settle_total",
            "POST /settle answers by outcome.",
            &[
                ("success", &self.settle_success),
                ("failed", &self.settle_failed),
                ("pending", &self.settle_pending),
                ("duplicate", &self.settle_duplicate),
                ("fault", &self.settle_faults),
                ("shed", &self.settle_shed),
            ],
        );
        family(
            "x402_reconcile_total",
            "Unfinished ledger rows handled by the reconciler, by outcome.",
            &[
                ("settled", &self.reconcile_settled),
                ("failed", &self.reconcile_failed),
                ("released", &self.reconcile_released),
                ("pending", &self.reconcile_pending),
                ("error", &self.reconcile_errors),
                ("reorged", &self.reorged),
            ],
        );
        family(
            "x402_handoff_total",
            "Settles handed to a replica holding a key (out) and settled for another (in).",
            &[("out", &self.handed_off), ("in", &self.taken_over)],
        );
        let _ = writeln!(
            out,
            "# HELP x402_nonce_conflicts_total Transactions signed again because their nonce was taken.\n\
             # TYPE x402_nonce_conflicts_total counter\nx402_nonce_conflicts_total {}",
            self.nonce_conflicts.load(Ordering::Relaxed)
        );
        out
    }
}

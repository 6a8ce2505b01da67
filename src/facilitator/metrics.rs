//! Business counters, rendered in the Prometheus text format at `GET /metrics`: outcomes, and
//! answers by network, scheme, outcome and reason (labels only from bounded sets: a network or
//! scheme we do not serve is counted as `other`, reasons are our own constants), refusals by
//! policy and budgets, and latency histograms per endpoint.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::FacilitatorError;
use crate::protocol::{SettleResponse, VerifyResponse, reason};

/// (endpoint, network, scheme, outcome, reason).
type AnswerLabels = (&'static str, String, String, &'static str, String);

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
    /// (endpoint, network, scheme, outcome, reason) → answers.
    answers: Mutex<BTreeMap<AnswerLabels, u64>>,
    /// reason → payments refused by policy or budgets, and requests refused by auth or rate
    /// limits.
    refusals: Mutex<BTreeMap<String, u64>>,
    /// endpoint → latency histogram.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

/// Upper bounds (seconds) of the latency buckets: from a cached `/supported` to a settle that
/// waits for its block.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts one `/verify` or `/settle` answer with its labels (already bounded by the caller).
    pub fn count_answer(
        &self,
        endpoint: &'static str,
        network: &str,
        scheme: &str,
        outcome: &'static str,
        reason: &str,
    ) {
        if let Ok(mut answers) = self.answers.lock() {
            *answers
                .entry((
                    endpoint,
                    network.into(),
                    scheme.into(),
                    outcome,
                    reason.into(),
                ))
                .or_default() += 1;
        }
    }

    pub fn count_refusal(&self, reason: &str) {
        if let Ok(mut r) = self.refusals.lock() {
            *r.entry(reason.to_string()).or_default() += 1;
        }
    }

    pub fn observe_latency(&self, endpoint: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(endpoint).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    fn render_labelled(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP x402_answers_total /verify and /settle answers by network, scheme, outcome and reason.\n\
             # TYPE x402_answers_total counter"
        );
        if let Ok(answers) = self.answers.lock() {
            for ((endpoint, network, scheme, outcome, reason), n) in answers.iter() {
                let _ = writeln!(
                    out,
                    "x402_answers_total{{endpoint=\"{endpoint}\",network=\"{network}\",scheme=\"{scheme}\",outcome=\"{outcome}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP x402_refusals_total Requests and payments refused by auth, rate limits, policy or budgets, by reason.\n\
             # TYPE x402_refusals_total counter"
        );
        if let Ok(refusals) = self.refusals.lock() {
            for (reason, n) in refusals.iter() {
                let _ = writeln!(out, "x402_refusals_total{{reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP x402_request_duration_seconds Time to answer, per endpoint.\n\
             # TYPE x402_request_duration_seconds histogram"
        );
        if let Ok(latency) = self.latency.lock() {
            for (endpoint, h) in latency.iter() {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "x402_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "x402_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}\n\
                     x402_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\n\
                     x402_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
    }

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
        self.render_labelled(&mut out);
        out
    }
}

//! Getting sightings off the payment path: the [`Cataloguer`] the core calls (a key lookup, a
//! copy of the few parts discovery needs, a non-blocking `try_send` into a bounded queue), and
//! the background worker that validates each one on a blocking thread, merges it into the
//! ledger, and prunes the catalog every minute.
//!
//! A full queue drops the sighting and counts it: a payment never waits for the catalog, and
//! nothing a payer sends can make the queue grow.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ingest::{self, Sighting};
use super::metrics::DiscoveryMetrics;
use super::schema::SchemaCache;
use super::{CatalogSink, EXTENSION, Policy};
use crate::ledger::{ListingPayment, SharedLedger, UpsertOutcome, now_ms};
use crate::protocol::{PaymentRequest, SettleResponse, VerifyResponse};

/// How often aged-out and surplus resources are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The sink the core calls after a valid verify and a successful settle.
pub struct Cataloguer {
    tx: mpsc::Sender<Sighting>,
    metrics: Arc<DiscoveryMetrics>,
    /// Whether verifies catalogue at all: only when unpaid resources are listed
    /// (`list_unpaid`). Otherwise what a free verify could add would never be shown, so it
    /// is not worth a queue slot, a validation or a database write.
    verifies: bool,
}

impl Cataloguer {
    /// Copies the sighting out of `request` and queues it, if the payment declares discovery.
    fn offer(&self, request: &PaymentRequest, payment: Option<ListingPayment>) {
        // Discovery is a v2 extension; v1 catalogues are not expected of facilitators (spec).
        let PaymentRequest::V2(r) = request else {
            return;
        };
        let Some(bazaar) = r
            .payment_payload
            .extensions
            .as_ref()
            .and_then(|e| e.get(EXTENSION))
        else {
            return;
        };
        let sighting = Sighting {
            resource: r
                .payment_payload
                .resource
                .as_ref()
                .and_then(|res| serde_json::to_value(res).ok()),
            bazaar: bazaar.clone(),
            requirements: r.payment_requirements.clone(),
            payment,
            seen_at: now_ms(),
        };
        if self.tx.try_send(sighting).is_err() {
            self.metrics.count("dropped");
        }
    }
}

impl CatalogSink for Cataloguer {
    fn extension(&self) -> &'static str {
        EXTENSION
    }

    fn after_verify(&self, request: &PaymentRequest, answer: &VerifyResponse) {
        if answer.is_valid && self.verifies {
            self.offer(request, None);
        }
    }

    fn after_settle(&self, request: &PaymentRequest, answer: &SettleResponse) {
        if !answer.success {
            return;
        }
        // An `upto` charge of 0 is settled with no transaction: nothing was paid, so it
        // counts as a verify does (docs/schemes.md).
        if answer.transaction.is_empty() {
            if self.verifies {
                self.offer(request, None);
            }
            return;
        }
        let payment = ListingPayment {
            network: answer.network.clone(),
            tx_id: ingest::normalize_address(&answer.transaction),
            payer: answer.payer.clone().unwrap_or_default(),
        };
        self.offer(request, Some(payment));
    }
}

/// The queue's two ends: the sink for the core, and the worker task draining it.
pub fn start(
    ledger: SharedLedger,
    policy: Policy,
    metrics: Arc<DiscoveryMetrics>,
    stop: CancellationToken,
) -> (Arc<Cataloguer>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(policy.queue_size.max(1));
    let sink = Arc::new(Cataloguer {
        tx,
        metrics: metrics.clone(),
        verifies: policy.list_unpaid,
    });
    let worker = Worker {
        ledger,
        policy,
        metrics,
        schemas: Arc::new(SchemaCache::default()),
    };
    (sink, tokio::spawn(worker.run(rx, stop)))
}

struct Worker {
    ledger: SharedLedger,
    policy: Policy,
    metrics: Arc<DiscoveryMetrics>,
    schemas: Arc<SchemaCache>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Sighting>, stop: CancellationToken) {
        // The first prune waits one period: at start-up the ledger is busy enough (migrations,
        // the reconcile pass) and nothing has aged since the last run's prune.
        let first = tokio::time::Instant::now() + PRUNE_EVERY;
        let mut prune = tokio::time::interval_at(first, PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                sighting = rx.recv() => match sighting {
                    Some(s) => self.catalogue(s).await,
                    None => break,
                },
                _ = prune.tick() => self.prune().await,
            }
        }
    }

    async fn catalogue(&self, sighting: Sighting) {
        let schemas = self.schemas.clone();
        let allow_private = self.policy.allow_private_hosts;
        let prepared = tokio::task::spawn_blocking(move || {
            ingest::prepare(&sighting, &schemas, allow_private)
        })
        .await;
        let listing = match prepared {
            Ok(Ok(listing)) => listing,
            Ok(Err(skip)) => {
                debug!(reason = skip.label(), "bazaar sighting not catalogued");
                self.metrics.count(skip.label());
                return;
            }
            Err(e) => {
                warn!(error = %e, "bazaar validation task failed");
                self.metrics.count("error");
                return;
            }
        };
        match self
            .ledger
            .upsert_listing(&listing, self.policy.max_resources)
            .await
        {
            Ok(outcome) => self.metrics.count(match outcome {
                UpsertOutcome::Inserted => "inserted",
                UpsertOutcome::Updated => "updated",
                UpsertOutcome::KeptSettled => "kept_paid",
                UpsertOutcome::Full => "full",
            }),
            Err(e) => {
                warn!(error = %e, "cannot catalogue a bazaar resource");
                self.metrics.count("error");
            }
        }
    }

    async fn prune(&self) {
        let now = now_ms();
        match self
            .ledger
            .prune_catalog(
                now - self.policy.age_out_ms(),
                now - super::USAGE_WINDOW_MS,
                self.policy.max_resources,
            )
            .await
        {
            Ok(report) => {
                let removed = report.aged_out + report.over_bound;
                self.metrics
                    .pruned
                    .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "cannot prune the discovery catalog"),
        }
    }
}

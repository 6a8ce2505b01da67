//! Bazaar discovery (x402 v2 `extensions.bazaar`; digest §6.1, §10.1.3, upstream
//! `specs/extensions/bazaar.md`): a catalog of paid resources learned from the payments this
//! facilitator sees, served by `GET /discovery/resources` and `GET /discovery/search`.
//!
//! The flow: the core calls a [`CatalogSink`] after every valid verify and successful settle.
//! The sink ([`queue::Cataloguer`]) only looks for the `bazaar` key, copies the few parts it
//! needs and `try_send`s them to a bounded queue; a background worker validates each sighting
//! ([`ingest`]: route-template guard, JSON Schema, shape, canonical URL, metadata) on a blocking
//! thread and merges it into the ledger (`src/ledger/catalog.rs`). The read side is
//! [`query::Catalog`].
//!
//! The policy, because `/verify` costs its caller nothing and everything in the extension and in
//! `paymentPayload.resource` is the payer's to write: listings show only resources with a
//! settled payment within `age_out_days`, so by default only settles catalogue (a verified-only
//! resource could never be shown). With `list_unpaid` verifies catalogue too, their resources
//! are listed after every paid one, marked, and a verify never changes a resource that has been
//! paid for. Everything is bounded: the queue, the sizes of what is stored, the number of
//! resources, accepts and price ranges per resource, and the listing queries in flight.

pub mod ingest;
pub mod metadata;
pub mod metrics;
pub mod query;
pub mod queue;
pub mod resource;
mod schema;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::DiscoverySettings;
use crate::ledger::SharedLedger;
use crate::protocol::{PaymentRequest, SettleResponse, VerifyResponse};

pub use metrics::DiscoveryMetrics;
pub use query::{Catalog, DiscoveryParams};
pub use queue::Cataloguer;

/// The extension key, in payloads and in `/supported.extensions`.
pub const EXTENSION: &str = "bazaar";

/// The window of the usage figures (settled payments, payers): 30 days.
pub const USAGE_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// Where the core reports payments for cataloguing. Implementations must return at once and
/// must never fail or change the payment's answer.
pub trait CatalogSink: Send + Sync {
    /// The extension key to advertise in `/supported`.
    fn extension(&self) -> &'static str;
    /// After `/verify` answered `answer` for `request`.
    fn after_verify(&self, request: &PaymentRequest, answer: &VerifyResponse);
    /// After `/settle` answered `answer` for `request`.
    fn after_settle(&self, request: &PaymentRequest, answer: &SettleResponse);
}

/// The operator's discovery settings, as the catalog uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub queue_size: usize,
    pub age_out_days: u64,
    pub list_unpaid: bool,
    pub max_resources: i64,
    pub allow_private_hosts: bool,
}

impl Policy {
    pub fn from_settings(s: &DiscoverySettings) -> Self {
        Policy {
            queue_size: s.queue_size,
            age_out_days: s.age_out_days,
            list_unpaid: s.list_unpaid,
            max_resources: i64::try_from(s.max_resources).unwrap_or(i64::MAX),
            allow_private_hosts: s.allow_private_hosts,
        }
    }

    /// `age_out_days` in milliseconds.
    pub fn age_out_ms(&self) -> i64 {
        i64::try_from(self.age_out_days)
            .unwrap_or(i64::MAX)
            .saturating_mul(24 * 3600 * 1000)
    }
}

/// Discovery, running: the sink for the core, the catalog for the handlers, the worker task.
pub struct Discovery {
    pub sink: Arc<Cataloguer>,
    pub catalog: Arc<Catalog>,
    pub worker: JoinHandle<()>,
}

/// Starts the cataloguing worker (stopped by `stop`) and returns what the app wires in.
/// Listing queries may use a quarter of the ledger's `pool_size` connections at most.
pub fn start(
    ledger: SharedLedger,
    settings: &DiscoverySettings,
    pool_size: u32,
    stop: CancellationToken,
) -> Discovery {
    let policy = Policy::from_settings(settings);
    let metrics = Arc::new(DiscoveryMetrics::default());
    let (sink, worker) = queue::start(ledger.clone(), policy.clone(), metrics.clone(), stop);
    let slots = usize::try_from(pool_size / 4).unwrap_or(1).max(1);
    Discovery {
        sink,
        catalog: Arc::new(Catalog::new(ledger, policy, metrics, slots)),
        worker,
    }
}

//! The core: pick the plugin, check the payment, consult the ledger, and for settles run
//! claim → sign → record → broadcast → confirm → record; reconcile what a crash or a slow chain
//! left unfinished.
//!
//! The ledger rule (digest §8.2): a payment's replay key is claimed in the ledger before anything
//! is signed, and a transaction id is recorded before its transaction is broadcast, so that a
//! concurrent or replayed settle can never broadcast twice and a crash leaves a row that says
//! what may be on chain.

pub mod leases;
pub mod metrics;
mod payment_id;
pub mod reconcile;
mod settle;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Span, info};

use self::leases::SignerLeases;
use self::metrics::Metrics;
use self::settle::{Settle, plugin_deadline};
use crate::ledger::{LedgerError, SettlementState, SharedLedger};
use crate::protocol::{PaymentRequest, SettleResponse, SupportedResponse, VerifyResponse, reason};
use crate::scheme::{
    Check, CheckedPayment, Deadline, Miss, Rejection, SchemeError, SchemeHandler, SchemeRegistry,
};

/// A fault of ours (not of the payment): answered with a 5xx and an id to find it in the logs.
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    #[error("ledger unavailable: {0}")]
    Ledger(#[from] LedgerError),
    /// The payment-identifier was used before with a different payment (HTTP 409).
    #[error("{0}")]
    Conflict(String),
}

/// Timing of the settle path.
#[derive(Debug, Clone, Copy)]
pub struct SettleTiming {
    /// How long a request may take from its arrival: a settle that cannot see its outcome by
    /// then answers `settlement_pending` (the SDK clients give up at 30 s).
    pub deadline: Duration,
    /// Lease beyond the deadline, so a live settle is never taken over.
    pub lease_margin: Duration,
}

/// What the HTTP layer and a running settle share: the transaction once it is recorded, and
/// whether the client stopped waiting (it was answered without the outcome, which it is then
/// owed).
#[derive(Debug, Default)]
pub struct SettleWatch {
    recorded: Mutex<Option<(String, String)>>,
    abandoned: AtomicBool,
}

impl SettleWatch {
    fn recorded(&self, replay_key: &str, tx: &str) {
        if let Ok(mut r) = self.recorded.lock() {
            *r = Some((replay_key.to_string(), tx.to_string()));
        }
    }

    /// `(replay key, transaction)` of the newest transaction recorded so far.
    pub fn transaction(&self) -> Option<(String, String)> {
        self.recorded.lock().ok().and_then(|r| r.clone())
    }

    /// The client will not see this settle's answer.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }
}

pub struct Facilitator {
    registry: SchemeRegistry,
    ledger: SharedLedger,
    leases: Arc<SignerLeases>,
    timing: SettleTiming,
    supported: SupportedResponse,
    pub metrics: Metrics,
}

/// Extension keys this facilitator implements, advertised in `/supported`.
pub const EXTENSIONS: &[&str] = &[payment_id::EXTENSION];

impl Facilitator {
    pub fn new(
        registry: SchemeRegistry,
        ledger: SharedLedger,
        leases: Arc<SignerLeases>,
        timing: SettleTiming,
    ) -> Self {
        let supported = registry.supported(EXTENSIONS.iter().map(|e| e.to_string()).collect());
        Facilitator {
            registry,
            ledger,
            leases,
            timing,
            supported,
            metrics: Metrics::default(),
        }
    }

    pub fn supported(&self) -> &SupportedResponse {
        &self.supported
    }

    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    pub fn timing(&self) -> SettleTiming {
        self.timing
    }

    /// The CAIP-2 networks some handler serves: the reconciler works only on their rows.
    pub fn served_networks(&self) -> Vec<String> {
        self.registry.networks()
    }

    /// The deadline of a request that arrived at `arrived`.
    pub fn deadline(&self, arrived: Instant) -> Deadline {
        Deadline::at(arrived + self.timing.deadline)
    }

    pub async fn verify(
        &self,
        request: &PaymentRequest,
        arrived: Instant,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let answer = self.verify_inner(request, arrived).await;
        self.metrics.count_verify(&answer);
        answer
    }

    async fn verify_inner(
        &self,
        request: &PaymentRequest,
        arrived: Instant,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let deadline = plugin_deadline(self.deadline(arrived));
        let handler = match self.handler(request) {
            Ok(handler) => handler,
            Err(rejection) => return Ok(invalid(rejection)),
        };
        // A payment-identifier is only read here: a verify reserves nothing.
        match payment_id::extract(request) {
            Ok(Some(id)) => {
                payment_id::refuse_conflict(self, handler.as_ref(), request, &id).await?
            }
            Ok(None) => {}
            Err(rejection) => return Ok(invalid(rejection)),
        }
        let payment = match self.check(handler.as_ref(), request, deadline).await? {
            Ok(payment) => payment,
            Err(rejection) => return Ok(invalid(rejection)),
        };
        if let Some(rejection) = self.replay_rejection(&payment).await? {
            return Ok(invalid(rejection));
        }
        if let Some(rejection) = handler.simulate(&payment, deadline).await? {
            return Ok(invalid(rejection.with_payer(payment.meta.payer.clone())));
        }
        Ok(VerifyResponse {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payment.meta.payer),
            extensions: None,
        })
    }

    pub async fn settle(
        &self,
        request: &PaymentRequest,
        arrived: Instant,
        watch: &SettleWatch,
    ) -> Result<SettleResponse, FacilitatorError> {
        let answer = self.settle_inner(request, arrived, watch).await;
        self.metrics.count_settle(&answer);
        // Money events are always logged (the per-request access log is at debug).
        match &answer {
            Ok(a) if a.success => {
                info!(tx = %a.transaction, network = %a.network, payer = a.payer.as_deref().unwrap_or(""), "settled")
            }
            Ok(a) => info!(
                reason = a.error_reason.as_deref().unwrap_or(""),
                tx = %a.transaction,
                network = %a.network,
                "settle refused or unfinished"
            ),
            Err(_) => {}
        }
        answer
    }

    async fn settle_inner(
        &self,
        request: &PaymentRequest,
        arrived: Instant,
        watch: &SettleWatch,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.payload_network().to_string();
        let handler = match self.handler(request) {
            Ok(handler) => handler,
            Err(rejection) => return Ok(settle_failure(rejection, "", &network)),
        };
        let payment_id = match payment_id::extract(request) {
            Ok(id) => id,
            Err(rejection) => return Ok(settle_failure(rejection, "", &network)),
        };
        let job = Settle {
            fac: self,
            handler: handler.as_ref(),
            request,
            network,
            fingerprint: request.fingerprint(),
            payment_id,
            deadline: plugin_deadline(self.deadline(arrived)),
            watch,
        };
        // payment-identifier first, before any clock: a retry of a settled payment gets its
        // answer even after the authorization's window closed (digest §6.2).
        if let Some(id) = &job.payment_id
            && let Some(answer) = payment_id::answered(
                self,
                job.handler,
                request,
                id,
                &job.fingerprint,
                &job.network,
            )
            .await?
        {
            return Ok(answer);
        }
        match self.check(job.handler, request, job.deadline).await? {
            Ok(payment) => job.run(payment).await,
            Err(rejection) => job.late(rejection).await,
        }
    }

    /// Called when a settle's answer was cut off before it was known (the server's own time
    /// bound): its client is owed the final answer.
    /// The mark is written in the background: the ledger may be what is holding the settle up,
    /// and the client's answer must not wait for it.
    pub fn owe(&self, watch: &SettleWatch) {
        watch.abandon();
        if let Some((key, _)) = watch.transaction() {
            let ledger = self.ledger.clone();
            tokio::spawn(async move {
                if let Err(e) = ledger.owe_answer(&key).await {
                    tracing::warn!(replay_key = %key, error = %e, "cannot mark an answer as owed");
                }
            });
        }
    }

    /// The plugin's checks. `Err` inside `Ok` is a business rejection.
    async fn check(
        &self,
        handler: &dyn SchemeHandler,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Result<CheckedPayment, Rejection>, FacilitatorError> {
        let span = Span::current();
        span.record("network", request.network());
        span.record("scheme", request.scheme());
        match handler.check(request, deadline).await? {
            Check::Valid(payment) => {
                span.record("payer", payment.meta.payer.as_str());
                Ok(Ok(payment))
            }
            Check::Invalid(rejection) => {
                if let Some(payer) = &rejection.payer {
                    span.record("payer", payer.as_str());
                }
                Ok(Err(rejection))
            }
        }
    }

    fn handler(&self, request: &PaymentRequest) -> Result<Arc<dyn SchemeHandler>, Rejection> {
        self.registry
            .lookup(request.x402_version(), request.scheme(), request.network())
            .cloned()
            .map_err(|miss| {
                let (reason, what) = match miss {
                    Miss::Network => (reason::INVALID_NETWORK, "network"),
                    Miss::Scheme => (reason::UNSUPPORTED_SCHEME, "scheme"),
                };
                Rejection::new(reason).with_message(format!(
                    "this facilitator has no v{} `{}` on `{}` ({what} not supported)",
                    request.x402_version(),
                    request.scheme(),
                    request.network()
                ))
            })
    }

    /// A payment whose replay key is claimed, in flight or settled is not valid again.
    async fn replay_rejection(
        &self,
        payment: &CheckedPayment,
    ) -> Result<Option<Rejection>, FacilitatorError> {
        if let Some(key) = &payment.meta.exclusive_key
            && let Some(row) = self.ledger.by_exclusive_key(key).await?
            && row.replay_key != payment.meta.replay_key
        {
            return Ok(Some(
                Rejection::new(reason::DUPLICATE_SETTLEMENT)
                    .with_message("another payment already settles this (same seller memo)")
                    .with_payer(payment.meta.payer.clone()),
            ));
        }
        let Some(row) = self.ledger.find(&payment.meta.replay_key).await? else {
            return Ok(None);
        };
        if row.state == SettlementState::Failed {
            return Ok(None);
        }
        let message = match row.tx_id {
            Some(tx) => format!("already {} in transaction {tx}", row.state.as_str()),
            None => format!("already {} by another settle", row.state.as_str()),
        };
        Ok(Some(
            Rejection::new(payment.meta.replay_reason)
                .with_message(message)
                .with_payer(payment.meta.payer.clone()),
        ))
    }
}

fn invalid(rejection: Rejection) -> VerifyResponse {
    VerifyResponse {
        is_valid: false,
        invalid_reason: Some(rejection.reason),
        invalid_message: rejection.message,
        payer: rejection.payer,
        extensions: None,
    }
}

pub(crate) fn settle_failure(
    rejection: Rejection,
    transaction: &str,
    network: &str,
) -> SettleResponse {
    SettleResponse {
        success: false,
        error_reason: Some(rejection.reason),
        error_message: rejection.message,
        payer: rejection.payer,
        transaction: transaction.to_string(),
        network: network.to_string(),
        extensions: None,
    }
}

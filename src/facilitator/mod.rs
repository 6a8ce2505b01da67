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

use std::sync::Arc;
use std::time::Duration;

use tracing::{Span, info};

use self::leases::SignerLeases;
use self::metrics::Metrics;
use crate::discovery::CatalogSink;
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
    /// How long a settle waits for the outcome before answering `settlement_pending`.
    pub confirm_timeout: Duration,
    /// Lease beyond the confirm bound, so a live settle is never taken over.
    pub lease_margin: Duration,
}

pub struct Facilitator {
    registry: SchemeRegistry,
    ledger: SharedLedger,
    leases: Arc<SignerLeases>,
    timing: SettleTiming,
    supported: SupportedResponse,
    pub metrics: Metrics,
    /// Told about valid verifies and successful settles (bazaar discovery); never waited for.
    catalog: Option<Arc<dyn CatalogSink>>,
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
            catalog: None,
        }
    }

    /// Reports payments to `sink` and advertises its extension in `/supported`.
    pub fn with_catalog(mut self, sink: Arc<dyn CatalogSink>) -> Self {
        self.supported.extensions.push(sink.extension().to_string());
        self.catalog = Some(sink);
        self
    }

    pub fn supported(&self) -> &SupportedResponse {
        &self.supported
    }

    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    pub async fn verify(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let answer = self.verify_inner(request).await;
        self.metrics.count_verify(&answer);
        if let (Some(catalog), Ok(a)) = (&self.catalog, &answer) {
            catalog.after_verify(request, a);
        }
        answer
    }

    async fn verify_inner(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let (handler, payment) = match self.check(request).await? {
            Ok(checked) => checked,
            Err(rejection) => return Ok(invalid(rejection)),
        };
        if let Err(rejection) = payment_id::check(self, request).await? {
            return Ok(invalid(rejection.with_payer(payment.meta.payer.clone())));
        }
        if let Some(rejection) = self.replay_rejection(&payment).await? {
            return Ok(invalid(rejection));
        }
        if let Some(rejection) = handler
            .simulate(&payment, Deadline::after(self.timing.confirm_timeout))
            .await?
        {
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
    ) -> Result<SettleResponse, FacilitatorError> {
        let answer = self.settle_inner(request).await;
        self.metrics.count_settle(&answer);
        if let (Some(catalog), Ok(a)) = (&self.catalog, &answer) {
            catalog.after_settle(request, a);
        }
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
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.payload_network().to_string();
        let (handler, payment) = match self.check(request).await? {
            Ok(checked) => checked,
            Err(rejection) => {
                // A retry after `settlement_pending` can arrive after the authorization's window
                // closed; if a transaction was recorded for it, the retry is owed its outcome.
                if let Some((handler, payment)) = self.recorded(request).await? {
                    return settle::run(
                        self,
                        handler.as_ref(),
                        &payment,
                        request,
                        network,
                        None,
                        Some(rejection),
                    )
                    .await;
                }
                return Ok(settle_failure(rejection, "", &network));
            }
        };
        let payment_id = match payment_id::check(self, request).await? {
            Ok(payment_id::Seen::Answered(stored)) => return Ok(*stored),
            Ok(payment_id::Seen::Fresh(id)) => id,
            Err(rejection) => {
                return Ok(settle_failure(
                    rejection.with_payer(payment.meta.payer.clone()),
                    "",
                    &network,
                ));
            }
        };
        let answer = settle::run(
            self,
            handler.as_ref(),
            &payment,
            request,
            network,
            payment_id.clone(),
            None,
        )
        .await?;
        if let Some(id) = payment_id.filter(|_| answer.success) {
            payment_id::store(self, &id, &answer).await?;
        }
        Ok(answer)
    }

    /// The payment as stored, when the ledger recorded a transaction for it (submitted or settled).
    async fn recorded(
        &self,
        request: &PaymentRequest,
    ) -> Result<Option<(Arc<dyn SchemeHandler>, CheckedPayment)>, FacilitatorError> {
        let Ok(handler) = self.handler(request) else {
            return Ok(None);
        };
        let Ok(payment) = handler.revive(request) else {
            return Ok(None);
        };
        let recorded = self
            .ledger
            .find(&payment.meta.replay_key)
            .await?
            .is_some_and(|row| {
                matches!(
                    row.state,
                    SettlementState::Submitted | SettlementState::Settled
                )
            });
        Ok(recorded.then_some((handler, payment)))
    }

    /// Dispatch and the plugin's checks. `Err` inside `Ok` is a business rejection.
    async fn check(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<(Arc<dyn SchemeHandler>, CheckedPayment), Rejection>, FacilitatorError> {
        let span = Span::current();
        span.record("network", request.network());
        span.record("scheme", request.scheme());
        let handler = match self.handler(request) {
            Ok(handler) => handler,
            Err(rejection) => return Ok(Err(rejection)),
        };
        match handler
            .check(request, Deadline::after(self.timing.confirm_timeout))
            .await?
        {
            Check::Valid(payment) => {
                span.record("payer", payment.meta.payer.as_str());
                Ok(Ok((handler, payment)))
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

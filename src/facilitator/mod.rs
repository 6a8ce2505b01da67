//! The core: pick the plugin, check the payment, consult the ledger, and for settles run
//! claim → sign → record → broadcast → confirm → record.
//!
//! The ledger rule (digest §8.2): a payment's replay key is claimed in the ledger before anything
//! is signed, and a transaction id is recorded before its transaction is broadcast, so that a
//! concurrent or replayed settle can never broadcast twice and a crash leaves a row that says
//! what may be on chain.

mod settle;

use std::sync::Arc;
use std::time::Duration;

use tracing::Span;

use crate::ledger::{LedgerError, SettlementState, SharedLedger};
use crate::protocol::{PaymentRequest, SettleResponse, SupportedResponse, VerifyResponse, reason};
use crate::scheme::{
    Check, CheckedPayment, Miss, Rejection, SchemeError, SchemeHandler, SchemeRegistry,
};

/// A fault of ours (not of the payment): answered with a 5xx and an id to find it in the logs.
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    #[error("ledger unavailable: {0}")]
    Ledger(#[from] LedgerError),
}

pub struct Facilitator {
    registry: SchemeRegistry,
    ledger: SharedLedger,
    confirm_timeout: Duration,
    supported: SupportedResponse,
}

impl Facilitator {
    pub fn new(registry: SchemeRegistry, ledger: SharedLedger, confirm_timeout: Duration) -> Self {
        let supported = registry.supported(Vec::new());
        Facilitator {
            registry,
            ledger,
            confirm_timeout,
            supported,
        }
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
        let checked = match self.check(request).await? {
            Ok(checked) => checked,
            Err(rejection) => return Ok(invalid(rejection)),
        };
        let (handler, payment) = checked;
        if let Some(rejection) = self.replay_rejection(&payment).await? {
            return Ok(invalid(rejection));
        }
        if let Some(rejection) = handler.simulate(&payment).await? {
            return Ok(invalid(rejection.with_payer(payment.payer.clone())));
        }
        Ok(VerifyResponse {
            is_valid: true,
            invalid_reason: None,
            invalid_message: None,
            payer: Some(payment.payer),
            extensions: None,
        })
    }

    pub async fn settle(
        &self,
        request: &PaymentRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.payload_network().to_string();
        let (handler, payment) = match self.check(request).await? {
            Ok(checked) => checked,
            Err(rejection) => return Ok(settle_failure(rejection, "", &network)),
        };
        settle::run(self, handler.as_ref(), &payment, request, network).await
    }

    /// Dispatch and the plugin's checks. `Err` inside `Ok` is a business rejection.
    async fn check(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<(Arc<dyn SchemeHandler>, CheckedPayment), Rejection>, FacilitatorError> {
        let span = Span::current();
        span.record("network", request.network());
        span.record("scheme", request.scheme());
        let handler =
            match self
                .registry
                .lookup(request.x402_version(), request.scheme(), request.network())
            {
                Ok(handler) => handler.clone(),
                Err(miss) => {
                    let (reason, what) = match miss {
                        Miss::Network => (reason::INVALID_NETWORK, "network"),
                        Miss::Scheme => (reason::UNSUPPORTED_SCHEME, "scheme"),
                    };
                    return Ok(Err(Rejection::new(reason).with_message(format!(
                        "this facilitator has no v{} `{}` on `{}` ({what} not supported)",
                        request.x402_version(),
                        request.scheme(),
                        request.network()
                    ))));
                }
            };
        match handler.check(request).await? {
            Check::Valid(payment) => {
                span.record("payer", payment.payer.as_str());
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

    /// A payment whose replay key is claimed, in flight or settled is not valid again.
    async fn replay_rejection(
        &self,
        payment: &CheckedPayment,
    ) -> Result<Option<Rejection>, FacilitatorError> {
        let Some(row) = self.ledger.find(&payment.replay_key).await? else {
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
            Rejection::new(payment.replay_reason)
                .with_message(message)
                .with_payer(payment.payer.clone()),
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

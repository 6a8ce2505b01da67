//! [`Erased`]: the one adapter from a typed [`Scheme`] to the object-safe [`SchemeHandler`] the
//! core holds. The only downcasts of plugin types happen here, and a wrong type is an internal
//! fault (the core handed a payment to a plugin that did not check it), never a panic.

use std::any::Any;

use async_trait::async_trait;

use super::{
    Broadcast, Check, Checked, CheckedPayment, Deadline, Description, Finality, Inclusion,
    NetworkProbe, Preparation, Prepared, RecordedTx, Rejection, Scheme, SchemeError, SchemeHandler,
    Signed, SignedView, Stop, TxStatus,
};
use crate::protocol::PaymentRequest;

/// A typed plugin behind the object-safe seam.
pub struct Erased<S>(pub S);

impl<S: Scheme> Erased<S> {
    fn payment<'a>(&self, p: &'a CheckedPayment) -> Result<&'a S::Payment, SchemeError> {
        p.payment.downcast_ref::<S::Payment>().ok_or_else(|| {
            SchemeError::Internal("a plugin was given a payment it did not check".into())
        })
    }

    fn signed<'a>(&self, p: &'a Prepared) -> Result<SignedView<'a, S::Signed>, SchemeError> {
        let details = p.details.downcast_ref::<S::Signed>().ok_or_else(|| {
            SchemeError::Internal("a plugin was given a transaction it did not sign".into())
        })?;
        Ok(SignedView {
            tx_id: &p.tx_id,
            signer: &p.signer,
            raw: &p.raw,
            details,
        })
    }
}

fn erase<P: Any + Send + Sync>(c: Checked<P>) -> CheckedPayment {
    Checked {
        meta: c.meta,
        payment: Box::new(c.payment),
    }
}

fn into_check<P: Any + Send + Sync>(
    checked: Result<Checked<P>, Stop>,
) -> Result<Check, SchemeError> {
    match checked {
        Ok(checked) => Ok(Check::Valid(erase(checked))),
        Err(Stop::Reject(rejection)) => Ok(Check::Invalid(rejection)),
        Err(Stop::Fault(e)) => Err(e),
    }
}

fn erase_signed<S: Any + Send + Sync>(signed: Signed<S>) -> Prepared {
    Signed {
        tx_id: signed.tx_id,
        signer: signed.signer,
        lease: signed.lease,
        raw: signed.raw,
        details: Box::new(signed.details),
    }
}

#[async_trait]
impl<S: Scheme> SchemeHandler for Erased<S> {
    fn describe(&self) -> Description {
        self.0.describe()
    }

    async fn check(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Check, SchemeError> {
        into_check(self.0.check(request, deadline).await)
    }

    async fn check_settle(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Check, SchemeError> {
        into_check(self.0.check_settle(request, deadline).await)
    }

    fn revive(&self, request: &PaymentRequest) -> Result<CheckedPayment, Rejection> {
        self.0.revive(request).map(erase)
    }

    async fn simulate(
        &self,
        payment: &CheckedPayment,
        deadline: Deadline,
    ) -> Result<Option<Rejection>, SchemeError> {
        match self.0.simulate(self.payment(payment)?, deadline).await {
            Ok(()) => Ok(None),
            Err(Stop::Reject(r)) => Ok(Some(r)),
            Err(Stop::Fault(e)) => Err(e),
        }
    }

    async fn prepare(
        &self,
        payment: &CheckedPayment,
        deadline: Deadline,
    ) -> Result<Preparation, SchemeError> {
        match self.0.prepare(self.payment(payment)?, deadline).await {
            Ok(signed) => Ok(Preparation::Ready(erase_signed(signed))),
            Err(Stop::Reject(r)) => Ok(Preparation::Rejected(r)),
            Err(Stop::Fault(e)) => Err(e),
        }
    }

    async fn broadcast(
        &self,
        payment: &CheckedPayment,
        prepared: &Prepared,
        deadline: Deadline,
    ) -> Result<Broadcast, SchemeError> {
        let signed = self.signed(prepared)?;
        self.0
            .broadcast(self.payment(payment)?, &signed, deadline)
            .await
    }

    async fn await_outcome(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        self.0
            .await_outcome(self.payment(payment)?, txs, deadline)
            .await
    }

    async fn reconcile(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError> {
        self.0
            .reconcile(self.payment(payment)?, txs, deadline)
            .await
    }

    async fn examine(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<TxStatus>, SchemeError> {
        self.0.examine(self.payment(payment)?, txs, deadline).await
    }

    async fn replace(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<Prepared>, SchemeError> {
        let replacement = self
            .0
            .replace(self.payment(payment)?, txs, deadline)
            .await?;
        Ok(replacement.map(erase_signed))
    }

    async fn finality(
        &self,
        inclusion: &Inclusion,
        deadline: Deadline,
    ) -> Result<Finality, SchemeError> {
        self.0.finality(inclusion, deadline).await
    }

    fn can_sign(&self) -> bool {
        self.0.can_sign()
    }

    async fn probe(&self, deadline: Deadline) -> NetworkProbe {
        self.0.probe(deadline).await
    }

    async fn signed_hash(
        &self,
        signer: &str,
        hash: [u8; 32],
        signature: &[u8],
        deadline: Deadline,
    ) -> Result<Option<bool>, SchemeError> {
        self.0.signed_hash(signer, hash, signature, deadline).await
    }

    fn authorization_window(&self, payment: &CheckedPayment) -> Option<(u64, u64)> {
        self.0.authorization_window(self.payment(payment).ok()?)
    }

    async fn discard(&self, prepared: &Prepared) {
        if let Ok(signed) = self.signed(prepared) {
            self.0.discard(&signed).await;
        }
    }
}

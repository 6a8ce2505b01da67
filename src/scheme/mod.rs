//! The plugin seam: what a payment scheme on one chain family must provide, and the registry the
//! core dispatches through, keyed by (x402 version, scheme, network).
//!
//! A plugin checks a request into a [`CheckedPayment`] (naming the payment's replay key), can
//! simulate it, and settles it in three steps the core sequences around the ledger: `prepare`
//! signs a transaction and names its id, the core records that id, then `broadcast` sends it and
//! `await_outcome` reports what the chain did. The core therefore never needs chain knowledge,
//! and a plugin never touches the ledger. Adding a chain or scheme is adding a [`SchemeFactory`].

mod registry;

use std::any::Any;
use std::time::Instant;

use async_trait::async_trait;

use crate::config::NetworkSettings;
use crate::protocol::{NetworkId, PaymentRequest, SupportedKind};

pub use registry::{Miss, SchemeKey, SchemeRegistry};

/// Replaces every `http(s)://…` in an error text with `<rpc-url>`: RPC URLs often carry API keys,
/// and error texts reach logs and fault answers.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest
        .find("http://")
        .into_iter()
        .chain(rest.find("https://"))
        .min()
    {
        out.push_str(&rest[..at]);
        out.push_str("<rpc-url>");
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A business "no": the payment is invalid or cannot settle. Answered with HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: Option<String>,
    pub payer: Option<String>,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            message: None,
            payer: None,
        }
    }
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
    pub fn with_payer(mut self, payer: impl Into<String>) -> Self {
        self.payer = Some(payer.into());
        self
    }
}

/// A payment that passed the plugin's checks, in the plugin's own parsed form.
pub struct CheckedPayment {
    pub network: NetworkId,
    pub payer: String,
    /// Identifies the payment in the chain's own replay domain, e.g. EVM `chain/asset/from/nonce`.
    pub replay_key: String,
    /// The reason to answer when the replay key is already claimed or settled.
    pub replay_reason: &'static str,
    pub pay_to: String,
    pub asset: String,
    pub amount: String,
    /// The plugin's parsed payload; only the plugin that made it reads it.
    pub details: Box<dyn Any + Send + Sync>,
}

pub enum Check {
    Valid(CheckedPayment),
    Invalid(Rejection),
}

/// A signed transaction, not yet sent.
pub struct Prepared {
    pub tx_id: String,
    /// The signer's public address, as the chain shows it.
    pub signer: String,
    /// The signer lease it was signed under; the core records it only while the lease is live.
    /// `None` for signers with no nonce lane to protect (e.g. Solana fee payers), which any
    /// replica may use at once.
    pub lease: Option<SignerLease>,
    /// The exact bytes to broadcast (and to broadcast again if the chain loses them).
    pub raw: Vec<u8>,
    /// What the plugin needs to broadcast it (e.g. which key and nonce).
    pub details: Box<dyn Any + Send + Sync>,
}

/// A lease on one signer key, granted by the core (see [`SignerGate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerLease {
    /// The lease key, e.g. `eip155:8453/0xabc…`.
    pub signer: String,
    pub fence: i64,
}

/// Which signer keys this process may use right now. Replicas share keys safely because each key
/// is leased to one process at a time (the core keeps the leases in the ledger).
pub trait SignerGate: Send + Sync {
    /// The fence of the live lease on `signer`, or `None` when another process holds it.
    fn fence(&self, signer: &str) -> Option<i64>;
}

pub enum Preparation {
    Ready(Prepared),
    /// Refused before anything was signed or sent.
    Rejected(Rejection),
}

pub enum Broadcast {
    /// The node accepted it (or already had it).
    Sent,
    /// The node refused it and it can never be mined; nothing reached the chain.
    Rejected(Rejection),
    /// The transaction cannot be mined as signed (e.g. its nonce was taken); prepare again.
    Retry(String),
    /// We do not know whether it reached the chain (timeout, connection cut).
    Ambiguous(String),
}

pub enum TxStatus {
    /// Mined, succeeded, and did what the payment says.
    Confirmed,
    /// Final and not a payment (reverted, or the wrong transfer).
    Failed(Rejection),
    /// No final answer before the deadline.
    Pending,
}

/// Faults of our own or of our chain connection, never of the payer: these become 5xx answers.
#[derive(Debug, thiserror::Error)]
pub enum SchemeError {
    #[error("chain RPC unavailable: {0}")]
    Rpc(String),
    #[error("no usable signer: {0}")]
    Signer(String),
    #[error("temporarily unable to settle: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[async_trait]
pub trait SchemeHandler: Send + Sync + 'static {
    /// The `/supported` kinds this handler answers; the registry keys it by them.
    fn kinds(&self) -> Vec<SupportedKind>;
    /// `(family pattern, address)` of every signer, for `/supported.signers`.
    fn signers(&self) -> Vec<(String, String)>;
    /// Every check that needs no simulation, in protocol order.
    async fn check(&self, request: &PaymentRequest) -> Result<Check, SchemeError>;
    /// Runs the payment against the chain without committing it.
    async fn simulate(&self, payment: &CheckedPayment) -> Result<Option<Rejection>, SchemeError>;
    async fn prepare(&self, payment: &CheckedPayment) -> Result<Preparation, SchemeError>;
    async fn broadcast(
        &self,
        payment: &CheckedPayment,
        prepared: &Prepared,
    ) -> Result<Broadcast, SchemeError>;
    async fn await_outcome(
        &self,
        payment: &CheckedPayment,
        tx_id: &str,
        deadline: Instant,
    ) -> Result<TxStatus, SchemeError>;
    /// Parses a stored request back into a payment without the time or chain checks, so a
    /// recorded transaction can be reconciled after the authorization's window closed.
    fn revive(&self, request: &PaymentRequest) -> Result<CheckedPayment, Rejection>;
    /// What became of a recorded transaction. If the chain has no trace of it, `raw` is sent
    /// again (the same bytes, so it can only ever be mined once); `Failed` when it can no
    /// longer be mined and the payment did not happen.
    async fn reconcile(
        &self,
        payment: &CheckedPayment,
        tx_id: &str,
        raw: Option<&[u8]>,
    ) -> Result<TxStatus, SchemeError>;
    /// Lease keys of every signer this handler may use.
    fn signer_keys(&self) -> Vec<String>;
    /// A prepared transaction will not be sent (its record was refused): give back what
    /// `prepare` reserved, e.g. an EVM nonce, so that no gap stalls the signer.
    async fn discard(&self, _prepared: &Prepared) {}
}

/// Builds the handler of one scheme for one configured network of its chain family.
#[async_trait]
pub trait SchemeFactory: Send + Sync {
    /// CAIP-2 namespace served, e.g. `eip155`.
    fn namespace(&self) -> &'static str;
    fn scheme(&self) -> &'static str;
    /// Offline validation for `check-config`.
    fn validate(&self, slug: &str, settings: &NetworkSettings) -> Result<(), String>;
    /// `Ok(None)` when the network is configured but cannot be served (no usable signer); the
    /// string says why, for the start-up log. `Err` stops start-up.
    async fn build(
        &self,
        slug: &str,
        settings: &NetworkSettings,
        gate: std::sync::Arc<dyn SignerGate>,
    ) -> Result<Result<std::sync::Arc<dyn SchemeHandler>, String>, String>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_rpc_urls() {
        let text = "error sending request for url (https://base.example/v2/SECRETKEY): timed out";
        assert_eq!(
            super::redact_urls(text),
            "error sending request for url (<rpc-url>): timed out"
        );
        assert_eq!(
            super::redact_urls("a http://x/k b https://y/z"),
            "a <rpc-url> b <rpc-url>"
        );
        assert_eq!(super::redact_urls("nothing here"), "nothing here");
    }
}

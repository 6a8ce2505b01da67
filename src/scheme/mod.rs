//! The plugin seam: what a payment scheme on one chain family must provide, and the registry the
//! core dispatches through, keyed by (x402 version, scheme, network).
//!
//! A plugin implements the typed [`Scheme`] trait: it checks a request into its own payment type
//! (naming the payment's replay key), can simulate it, and settles it in steps the core
//! sequences around the ledger: `prepare` signs a transaction and names its id, the core records
//! that id, then `broadcast` sends it and `await_outcome` / `reconcile` report what the chain
//! did. [`Erased`] turns a typed plugin into the object-safe [`SchemeHandler`] the core holds,
//! doing the one downcast of the plugin's payment type. The core therefore never needs chain
//! knowledge, and a plugin never touches the ledger. Adding a chain or scheme is adding a
//! [`SchemeFactory`].
//!
//! Inside a plugin, a refusal travels with `?` as [`Stop::Reject`] and a fault of ours as
//! [`Stop::Fault`]; at the seam they become a [`Check`] value or a [`SchemeError`].

mod erased;
mod probe;
mod registry;

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::config::NetworkSettings;
use crate::protocol::{NetworkId, PaymentRequest, SupportedKind};

pub use erased::Erased;
pub use probe::{NetworkProbe, RpcProbe, SignerProbe};
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

/// Why a plugin step stopped early: the payment's fault (a [`Rejection`], answered 200) or
/// ours (a [`SchemeError`], answered 5xx). Lets both travel with `?`.
#[derive(Debug)]
pub enum Stop {
    Reject(Rejection),
    Fault(SchemeError),
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Self {
        Stop::Reject(r)
    }
}

impl From<SchemeError> for Stop {
    fn from(e: SchemeError) -> Self {
        Stop::Fault(e)
    }
}

impl Stop {
    /// Puts `payer` on a rejection that has none yet.
    pub fn with_payer(self, payer: &str) -> Self {
        match self {
            Stop::Reject(r) if r.payer.is_none() => Stop::Reject(r.with_payer(payer)),
            other => other,
        }
    }
}

/// The time by which the request a plugin works for must be answered. Every RPC call of a
/// plugin is bounded by what is left of it, so no step can outlive the request (the SDK
/// clients give up at 30 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    pub fn after(d: Duration) -> Self {
        Deadline(Instant::now() + d)
    }

    pub fn instant(self) -> Instant {
        self.0
    }

    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// How long one call with its own timeout `per_call` may take within this deadline.
    pub fn cap(self, per_call: Duration) -> Duration {
        per_call.min(self.remaining())
    }
}

/// What every checked payment says about itself, whatever its scheme.
#[derive(Debug, Clone)]
pub struct PaymentMeta {
    pub network: NetworkId,
    pub payer: String,
    /// Identifies the payment in the chain's own replay domain, e.g. EVM `chain/asset/from/nonce`.
    pub replay_key: String,
    /// The reason to answer when the replay key is already claimed or settled.
    pub replay_reason: &'static str,
    pub pay_to: String,
    pub asset: String,
    /// What this payment moves (for `upto`, the charge the seller settles).
    pub amount: String,
    /// What makes two requests *the same payment*: a digest of the signed payment and the terms
    /// it pays, computed from parsed values so that encodings (number formats, hex case…) do not
    /// matter. A request whose fingerprint differs from a ledger row's is another payment and
    /// never acts on that row.
    pub fingerprint: String,
    /// A key that at most one live payment may hold, whatever its replay key: e.g. a seller's
    /// invoice memo (`solana:<cluster>/memo/<payTo>/<memo hash>`), paid once even by two
    /// different transactions (docs/solana.md §7). `None` for payments with no such key.
    pub exclusive_key: Option<String>,
    /// The most the payer signed for, in schemes where the seller picks the charge at settle
    /// (`upto`, docs/schemes.md): the ledger keeps it beside `amount`, and the settle answer
    /// then names the amount charged. `None` for schemes that move what was signed.
    pub max_amount: Option<String>,
    /// The signer lease (a [`SignerLease::signer`] key) of the one key that may send this
    /// payment's transaction, when the contract checks who sends it (`upto`: the facilitator
    /// its witness names). A replica that does not hold it hands the payment to the one that
    /// does. `None`: any key of the network.
    pub sender: Option<String>,
}

impl PaymentMeta {
    /// A charge of 0 under a signed maximum: settled with no transaction at all (nothing is
    /// sent and the payer's authorization is not used on chain), but recorded like any payment
    /// so that its replay key stays spent and a retry is answered the same.
    pub fn moves_nothing(&self) -> bool {
        self.max_amount.is_some() && self.amount == "0"
    }

    /// The `amount` a settle answer names: the charge, in schemes where the seller picks it.
    pub fn charged(&self) -> Option<String> {
        self.max_amount.as_ref().map(|_| self.amount.clone())
    }
}

/// A payment that passed a plugin's checks: what it says about itself, and the plugin's own
/// parsed form `P` (which only that plugin reads).
#[derive(Debug, Clone)]
pub struct Checked<P> {
    pub meta: PaymentMeta,
    pub payment: P,
}

/// A checked payment as the core holds it, its plugin type erased.
pub type CheckedPayment = Checked<Box<dyn Any + Send + Sync>>;

pub enum Check {
    Valid(CheckedPayment),
    Invalid(Rejection),
}

/// A signed transaction, not yet sent; `S` is what the plugin needs to broadcast it (which key,
/// which nonce).
pub struct Signed<S> {
    pub tx_id: String,
    /// The signer's public address, as the chain shows it.
    pub signer: String,
    /// The signer lease it was signed under; the core records it only while the lease is live.
    /// `None` for signers with no nonce lane to protect (e.g. Solana fee payers), which any
    /// replica may use at once.
    pub lease: Option<SignerLease>,
    /// The exact bytes to broadcast (and to broadcast again if the chain loses them).
    pub raw: Vec<u8>,
    pub details: S,
}

/// A signed transaction as the core holds it.
pub type Prepared = Signed<Box<dyn Any + Send + Sync>>;

/// A borrowed view of a signed transaction, as a plugin gets its own back.
pub struct SignedView<'a, S> {
    pub tx_id: &'a str,
    pub signer: &'a str,
    pub raw: &'a [u8],
    pub details: &'a S,
}

/// A transaction the ledger recorded for a payment, as the core hands it back to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTx {
    pub tx_id: String,
    /// The signed bytes, when recorded (always, since the first release).
    pub raw: Option<Vec<u8>>,
    /// When the ledger recorded it (unix ms): how long it has been waiting.
    pub recorded_at_ms: i64,
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
    /// No node could be reached at all: the bytes never left this process.
    Unreachable(String),
}

/// Where a transaction was included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    pub tx_id: String,
    /// Block number (EVM) or slot (Solana), when the chain said.
    pub block: Option<u64>,
    /// The including block's hash, to notice that a reorg replaced it.
    pub block_hash: Option<String>,
}

/// Whether an included transaction can still leave the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// Past the reorg depth (or the chain's own finality): it stays.
    Final,
    /// Still on the chain, not yet past the depth.
    Holding,
    /// Its block is no longer on the chain (a reorg): the payment must be looked at again.
    Vanished,
}

pub enum TxStatus {
    /// Mined, succeeded, and did what the payment says.
    Confirmed(Inclusion),
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

/// What a handler serves and signs with.
#[derive(Debug, Clone, Default)]
pub struct Description {
    /// The `/supported` kinds it answers; the registry keys it by them.
    pub kinds: Vec<SupportedKind>,
    /// `(family pattern, address)` of every signer, for `/supported.signers`.
    pub signers: Vec<(String, String)>,
    /// Lease keys of every signer with a nonce lane (see [`SignerGate`]).
    pub lease_keys: Vec<String>,
    /// Extension keys it implements (e.g. `eip2612GasSponsoring`), for `/supported.extensions`.
    pub extensions: Vec<String>,
}

/// A payment scheme on one network, with its own payment and signed-transaction types.
#[async_trait]
pub trait Scheme: Send + Sync + 'static {
    type Payment: Send + Sync + 'static;
    type Signed: Send + Sync + 'static;

    fn describe(&self) -> Description;

    /// Every check that needs no simulation, in protocol order.
    async fn check(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Checked<Self::Payment>, Stop>;

    /// The checks of a `/settle`. The same as [`Scheme::check`] unless the scheme's settle
    /// request says something else than its verify request: in `upto` the seller's
    /// `requirements.amount` is the signed maximum at verify and the actual charge at settle.
    async fn check_settle(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Checked<Self::Payment>, Stop> {
        self.check(request, deadline).await
    }

    /// Parses a stored request back into a payment without the time or chain checks, so a
    /// recorded transaction can be reconciled after the authorization's window closed.
    fn revive(&self, request: &PaymentRequest) -> Result<Checked<Self::Payment>, Rejection>;

    /// Runs the payment against the chain without committing it.
    async fn simulate(&self, payment: &Self::Payment, deadline: Deadline) -> Result<(), Stop>;

    /// Signs the transaction that performs the payment; a rejection means nothing was signed.
    async fn prepare(
        &self,
        payment: &Self::Payment,
        deadline: Deadline,
    ) -> Result<Signed<Self::Signed>, Stop>;

    async fn broadcast(
        &self,
        payment: &Self::Payment,
        signed: &SignedView<'_, Self::Signed>,
        deadline: Deadline,
    ) -> Result<Broadcast, SchemeError>;

    /// Waits until `deadline` for one of `txs` (all recorded for this payment, newest last) to
    /// become final.
    async fn await_outcome(
        &self,
        payment: &Self::Payment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError>;

    /// What became of recorded transactions, decided from chain state. If the chain has no
    /// trace of them, the newest is sent again (the same bytes, so it can only ever be mined
    /// once); `Failed` only when none can ever be mined and the payment did not happen.
    async fn reconcile(
        &self,
        payment: &Self::Payment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError>;

    /// Which of `txs` the chain mined, and what it did, from receipts alone: no resend, no
    /// clock. `None` when none is mined (yet). Used before a failed payment is tried again.
    async fn examine(
        &self,
        payment: &Self::Payment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<TxStatus>, SchemeError>;

    /// A transaction to take the place of the newest of `txs` when it is stuck (e.g. priced
    /// below the chain's fees): the same payment at a higher fee while it can still be paid,
    /// or a cancellation that frees the signer's nonce once it cannot. `None`: leave it.
    async fn replace(
        &self,
        _payment: &Self::Payment,
        _txs: &[RecordedTx],
        _deadline: Deadline,
    ) -> Result<Option<Signed<Self::Signed>>, SchemeError> {
        Ok(None)
    }

    /// Whether an included transaction is final, still holding, or gone in a reorg.
    async fn finality(
        &self,
        _inclusion: &Inclusion,
        _deadline: Deadline,
    ) -> Result<Finality, SchemeError> {
        Ok(Finality::Final)
    }

    /// A prepared transaction will not be sent (its record was refused): give back what
    /// `prepare` reserved, e.g. an EVM nonce, so that no gap stalls the signer.
    async fn discard(&self, _signed: &SignedView<'_, Self::Signed>) {}

    /// Whether this process can sign a settlement now (it holds a lease on a key of this
    /// network that is not being handed over). When it cannot, the core hands the payment to a
    /// replica that can.
    fn can_sign(&self) -> bool {
        true
    }

    /// A live look at the network for operators (RPC health per URL, signer balances), bounded
    /// by `deadline`. Additive: a plugin that does not implement it reports nothing.
    async fn probe(&self, _deadline: Deadline) -> NetworkProbe {
        NetworkProbe::default()
    }

    /// Whether `signer` signed the 32-byte `hash` with `signature`, asking the chain when the
    /// signer may be a contract (sessions' sign-in proofs: ERC-1271, ERC-6492). `None`: this
    /// scheme has no such check, or `signer` is not an address of its chain.
    async fn signed_hash(
        &self,
        _signer: &str,
        _hash: [u8; 32],
        _signature: &[u8],
        _deadline: Deadline,
    ) -> Result<Option<bool>, SchemeError> {
        Ok(None)
    }

    /// The unix times (seconds) between which the payment's authorization is valid, for the
    /// operator's `max_authorization_secs`; `None` for schemes whose authorization has no
    /// window of the payer's choosing.
    fn authorization_window(&self, _payment: &Self::Payment) -> Option<(u64, u64)> {
        None
    }
}

/// A scheme handler as the core holds it: [`Scheme`] with its types erased (see [`Erased`]).
#[async_trait]
pub trait SchemeHandler: Send + Sync + 'static {
    fn describe(&self) -> Description;
    async fn check(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Check, SchemeError>;
    async fn check_settle(
        &self,
        request: &PaymentRequest,
        deadline: Deadline,
    ) -> Result<Check, SchemeError>;
    fn revive(&self, request: &PaymentRequest) -> Result<CheckedPayment, Rejection>;
    async fn simulate(
        &self,
        payment: &CheckedPayment,
        deadline: Deadline,
    ) -> Result<Option<Rejection>, SchemeError>;
    async fn prepare(
        &self,
        payment: &CheckedPayment,
        deadline: Deadline,
    ) -> Result<Preparation, SchemeError>;
    async fn broadcast(
        &self,
        payment: &CheckedPayment,
        prepared: &Prepared,
        deadline: Deadline,
    ) -> Result<Broadcast, SchemeError>;
    async fn await_outcome(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError>;
    async fn reconcile(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<TxStatus, SchemeError>;
    async fn examine(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<TxStatus>, SchemeError>;
    async fn replace(
        &self,
        payment: &CheckedPayment,
        txs: &[RecordedTx],
        deadline: Deadline,
    ) -> Result<Option<Prepared>, SchemeError>;
    async fn finality(
        &self,
        inclusion: &Inclusion,
        deadline: Deadline,
    ) -> Result<Finality, SchemeError>;
    async fn discard(&self, prepared: &Prepared);
    fn can_sign(&self) -> bool;
    /// See [`Scheme::probe`].
    async fn probe(&self, _deadline: Deadline) -> NetworkProbe {
        NetworkProbe::default()
    }
    async fn signed_hash(
        &self,
        signer: &str,
        hash: [u8; 32],
        signature: &[u8],
        deadline: Deadline,
    ) -> Result<Option<bool>, SchemeError>;
    fn authorization_window(&self, payment: &CheckedPayment) -> Option<(u64, u64)>;
}

/// What a factory made of one configured network.
pub enum Built {
    Serving(Arc<dyn SchemeHandler>),
    /// Configured but cannot be served now (no usable signer); the text says why, for the log.
    NotServed(String),
}

/// Builds the handler of one scheme for one configured network of its chain family.
#[async_trait]
pub trait SchemeFactory: Send + Sync {
    /// CAIP-2 namespace served, e.g. `eip155`.
    fn namespace(&self) -> &'static str;
    fn scheme(&self) -> &'static str;
    /// Offline validation for `check-config`.
    fn validate(&self, slug: &str, settings: &NetworkSettings) -> Result<(), String>;
    /// `Err` stops start-up (a configuration that cannot be right, e.g. the wrong chain).
    async fn build(
        &self,
        slug: &str,
        settings: &NetworkSettings,
        gate: Arc<dyn SignerGate>,
    ) -> Result<Built, String>;
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

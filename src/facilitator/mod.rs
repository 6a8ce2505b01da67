//! The core: pick the plugin, check the payment, consult the ledger, and for settles run
//! claim → sign → record → broadcast → confirm → record; reconcile what a crash or a slow chain
//! left unfinished.
//!
//! The ledger rule (digest §8.2): a payment's replay key is claimed in the ledger before anything
//! is signed, and a transaction id is recorded before its transaction is broadcast, so that a
//! concurrent or replayed settle can never broadcast twice and a crash leaves a row that says
//! what may be on chain.

mod handoff;
pub mod health;
pub mod leases;
pub mod metrics;
mod payment_id;
pub mod reconcile;
mod settle;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Span, info};

use self::leases::SignerLeases;
use self::metrics::Metrics;
use self::settle::{Settle, plugin_deadline};
use crate::access::{Caller, Guard};
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
    /// How long a request may take from its arrival: a settle that cannot see its outcome by
    /// then answers `settlement_pending` (the SDK clients give up at 30 s).
    pub deadline: Duration,
    /// Lease beyond the deadline, so a live settle is never taken over.
    pub lease_margin: Duration,
}

/// What the HTTP layer and a running settle share, under one lock: the newest transaction once
/// it is recorded, the confirmed one once the chain has spoken, and whether the client stopped
/// waiting. Exactly one side delivers the outcome: the settle, if it gets there first (it then
/// clears the answer owed to its client), or the HTTP layer's cut-off, which answers with what
/// the watch holds and leaves the answer owed (every recorded transaction makes its client owed
/// the outcome until it is delivered; see docs/ledger.md).
#[derive(Debug, Default)]
pub struct SettleWatch {
    state: Mutex<Watched>,
}

#[derive(Debug, Default, Clone)]
struct Watched {
    recorded: Option<(String, String)>,
    /// The amount a success names (`upto`'s charge; see `SettleResponse::amount`).
    amount: Option<String>,
    confirmed: Option<String>,
    abandoned: bool,
    /// The client hung up unanswered: nobody was told what the watch holds.
    hung_up: bool,
}

/// What the cut-off found when the client stopped waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutOff {
    /// The chain confirmed this transaction (of the payment with this replay key): answer the
    /// success (naming `amount` when the scheme does), and clear what is owed (see
    /// `Facilitator::delivered`).
    Confirmed {
        replay_key: String,
        tx: String,
        amount: Option<String>,
    },
    /// This transaction was recorded (it may be on chain): answer `settlement_pending`.
    Recorded(String),
    /// Nothing was recorded, so nothing can ever be sent for this request.
    Nothing,
}

impl SettleWatch {
    /// A watch for a settle nobody waits on (a hand-off taken for another replica): it never
    /// clears an answer owed to a client.
    pub(crate) fn unwatched() -> Self {
        SettleWatch {
            state: Mutex::new(Watched {
                abandoned: true,
                ..Watched::default()
            }),
        }
    }

    /// A transaction was recorded for this request, whose success names `amount`.
    fn recorded(&self, replay_key: &str, tx: &str, amount: Option<String>) {
        if let Ok(mut w) = self.state.lock() {
            w.recorded = Some((replay_key.to_string(), tx.to_string()));
            w.amount = amount;
        }
    }

    /// The chain confirmed `tx`: `true` when this settle is the one delivering the outcome (the
    /// client still waits), `false` when the client was already answered by the cut-off.
    fn deliver(&self, tx: &str) -> bool {
        let Ok(mut w) = self.state.lock() else {
            return false;
        };
        if w.abandoned {
            return false;
        }
        w.confirmed = Some(tx.to_string());
        true
    }

    /// The client hung up before it was answered (its connection closed): it stops waiting,
    /// and nobody tells it anything, so the outcome stays owed to its retry. A settle that was
    /// about to deliver (`deliver` said yes) looks again before it clears what is owed, since
    /// the ledger writes in between may take seconds (`hung_up`).
    pub fn hang_up(&self) {
        if let Ok(mut w) = self.state.lock() {
            w.abandoned = true;
            w.hung_up = true;
        }
    }

    /// Whether the client hung up unanswered; a poisoned lock counts as gone (the answer then
    /// stays owed, which costs at most a repeated success for the same transaction).
    fn hung_up(&self) -> bool {
        self.state.lock().map_or(true, |w| w.hung_up)
    }

    /// Whether a client still waits on this settle: not the reconciler's or a hand-off
    /// taker's (`unwatched`), not one cut off or hung up.
    fn waits(&self) -> bool {
        self.state.lock().is_ok_and(|w| !w.abandoned)
    }

    /// The client stops waiting; what to tell it.
    pub fn abandon(&self) -> CutOff {
        let Ok(mut w) = self.state.lock() else {
            return CutOff::Nothing;
        };
        w.abandoned = true;
        match (&w.confirmed, &w.recorded) {
            (Some(tx), recorded) => CutOff::Confirmed {
                replay_key: recorded
                    .as_ref()
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default(),
                tx: tx.clone(),
                amount: w.amount.clone(),
            },
            (None, Some((_, tx))) => CutOff::Recorded(tx.clone()),
            (None, None) => CutOff::Nothing,
        }
    }
}

pub struct Facilitator {
    registry: SchemeRegistry,
    ledger: SharedLedger,
    leases: Arc<SignerLeases>,
    timing: SettleTiming,
    supported: SupportedResponse,
    pub metrics: Metrics,
    handoffs: Handoffs,
    /// Told about valid verifies and successful settles (bazaar discovery); never waited for.
    catalog: Option<Arc<dyn CatalogSink>>,
    /// Operator policy and budgets; `None` takes every payment the plugins accept.
    guard: Option<Arc<Guard>>,
    /// What each network can do right now (`health`).
    pub health: health::HealthBoard,
}

/// Hand-offs between replicas (Postgres only): wake-ups for the taker when one is queued and
/// for requesters when an outcome is recorded (see `handoff.rs`).
#[derive(Debug, Default)]
pub(crate) struct Handoffs {
    pub enabled: bool,
    pub work: tokio::sync::Notify,
    pub outcome: tokio::sync::Notify,
}

/// Which endpoint a request's checks are for (see `Scheme::check_settle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Verify,
    Settle,
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
        let handoffs = Handoffs {
            enabled: ledger.backend() == crate::ledger::Backend::Postgres,
            ..Handoffs::default()
        };
        Facilitator {
            registry,
            ledger,
            leases,
            timing,
            supported,
            metrics: Metrics::default(),
            handoffs,
            catalog: None,
            guard: None,
            health: health::HealthBoard::default(),
        }
    }

    /// Judges every new payment by `guard` (policy, budgets) before any RPC call.
    pub fn with_guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    pub fn guard(&self) -> Option<&Arc<Guard>> {
        self.guard.as_ref()
    }

    /// The guard's verdict on a payment, from its parsed form (`revive`: no clock, no chain).
    /// A request the plugin cannot parse (`None`) passes here and is refused by the plugin's
    /// own check.
    fn admit(
        &self,
        handler: &dyn SchemeHandler,
        parsed: Option<&CheckedPayment>,
        caller: &Caller,
    ) -> Option<Rejection> {
        let (guard, parsed) = (self.guard.as_ref()?, parsed?);
        let window = handler.authorization_window(parsed);
        let rejection = guard.admit(&parsed.meta, window, caller).err()?;
        self.metrics.count_refusal(&rejection.reason);
        Some(rejection)
    }

    /// Reports payments to `sink` and advertises its extension in `/supported`.
    pub fn with_catalog(mut self, sink: Arc<dyn CatalogSink>) -> Self {
        self.supported.extensions.push(sink.extension().to_string());
        self.catalog = Some(sink);
        self
    }

    /// Advertises one more extension key in `/supported` (sessions).
    pub fn with_extension(mut self, key: &str) -> Self {
        self.supported.extensions.push(key.to_string());
        self
    }

    /// The v2 `exact` handler serving `network`, for checks outside payments (sessions'
    /// smart-wallet signatures).
    pub fn network_handler(&self, network: &str) -> Option<&Arc<dyn crate::scheme::SchemeHandler>> {
        self.registry.lookup(2, "exact", network).ok()
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

    /// A live probe of every served network (see `SchemeRegistry::probe`).
    pub async fn probe_networks(
        &self,
        deadline: Deadline,
    ) -> std::collections::BTreeMap<String, crate::scheme::NetworkProbe> {
        self.registry.probe(deadline).await
    }

    /// The served networks this process can sign for right now (it takes their hand-offs).
    pub fn signing_networks(&self) -> Vec<String> {
        self.registry.signing_networks()
    }

    pub fn leases(&self) -> &Arc<SignerLeases> {
        &self.leases
    }

    /// Starts the hand-off taker and the notification listener (Postgres; nothing on SQLite).
    pub fn spawn_handoffs(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        handoff::spawn(self.clone(), stop)
    }

    /// The deadline of a request that arrived at `arrived`.
    pub fn deadline(&self, arrived: Instant) -> Deadline {
        Deadline::at(arrived + self.timing.deadline)
    }

    pub async fn verify(
        &self,
        request: &PaymentRequest,
        arrived: Instant,
        caller: &Caller,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let answer = self.verify_inner(request, arrived, caller).await;
        self.metrics.count_verify(&answer);
        let (outcome, reason) = match &answer {
            Ok(a) if a.is_valid => ("valid", ""),
            Ok(a) => ("invalid", a.invalid_reason.as_deref().unwrap_or("")),
            Err(_) => ("fault", ""),
        };
        self.count_answer("verify", request, outcome, reason);
        if let (Some(catalog), Ok(a)) = (&self.catalog, &answer) {
            catalog.after_verify(request, a);
        }
        answer
    }

    async fn verify_inner(
        &self,
        request: &PaymentRequest,
        arrived: Instant,
        caller: &Caller,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let deadline = plugin_deadline(self.deadline(arrived));
        let handler = match self.handler(request) {
            Ok(handler) => handler,
            Err(rejection) => return Ok(invalid(rejection)),
        };
        let parsed = handler.revive(request).ok();
        if let Some(rejection) = self.admit(handler.as_ref(), parsed.as_ref(), caller) {
            return Ok(invalid(rejection));
        }
        // A payment-identifier is only read here: a verify reserves nothing.
        match payment_id::extract(request) {
            Ok(Some(id)) => {
                payment_id::refuse_conflict(self, handler.as_ref(), request, &id).await?
            }
            Ok(None) => {}
            Err(rejection) => return Ok(invalid(rejection)),
        }
        let payment = match self
            .check(handler.as_ref(), request, Phase::Verify, deadline)
            .await?
        {
            Ok(payment) => payment,
            Err(rejection) => return Ok(invalid(rejection)),
        };
        let payment_id = payment_id::extract(request).ok().flatten();
        if let Some(rejection) = self
            .replay_rejection(handler.as_ref(), &payment, payment_id.as_deref())
            .await?
        {
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
        caller: &Caller,
    ) -> Result<SettleResponse, FacilitatorError> {
        let answer = self.settle_inner(request, arrived, watch, caller).await;
        self.metrics.count_settle(&answer);
        let (outcome, reason) = match &answer {
            Ok(a) if a.success => ("success", ""),
            Ok(a) => ("failed", a.error_reason.as_deref().unwrap_or("")),
            Err(_) => ("fault", ""),
        };
        self.count_answer("settle", request, outcome, reason);
        if let (Some(catalog), Ok(a)) = (&self.catalog, &answer) {
            catalog.after_settle(&self.as_offered(request, a), a);
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
        arrived: Instant,
        watch: &SettleWatch,
        caller: &Caller,
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
        // The payment's identity, from its parsed form (no clock, no chain); a request the
        // plugin cannot even parse is refused by the check below.
        let parsed = handler.revive(request).ok();
        let fingerprint = parsed
            .as_ref()
            .map(|p| p.meta.fingerprint.clone())
            .unwrap_or_else(|| request.fingerprint());
        let job = Settle {
            fac: self,
            handler: handler.as_ref(),
            request,
            network,
            fingerprint,
            payment_id,
            deadline: plugin_deadline(self.deadline(arrived)),
            watch,
            handed_off: false,
            caller,
            sent: std::sync::atomic::AtomicBool::new(false),
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
        // Policy and budgets before any RPC call: a refused payment costs us nothing.
        if let Some(rejection) = self.admit(job.handler, parsed.as_ref(), caller) {
            return Ok(settle_failure(rejection, "", &job.network));
        }
        match self
            .check(job.handler, request, Phase::Settle, job.deadline)
            .await?
        {
            Ok(payment) => job.run(payment).await,
            Err(rejection) => job.late(rejection).await,
        }
    }

    /// The HTTP layer delivered a settle's success itself (its own ledger write was late):
    /// clear what the payment's client is owed, in the background (the ledger may be what is
    /// slow), so that a replay is not answered again.
    pub fn delivered(&self, replay_key: String, payment_id: Option<String>) {
        let ledger = self.ledger.clone();
        // As long as the settle may still be writing its outcome (its lease), and a little more.
        let tries = (self.timing.deadline + self.timing.lease_margin).as_millis() / 500 + 20;
        tokio::spawn(async move {
            // Lost: the settle's own write has not landed yet, or someone collected it.
            for _ in 0..tries {
                match ledger
                    .take_owed_answer(
                        &replay_key,
                        payment_id.as_deref(),
                        crate::ledger::Collector::Claimer,
                    )
                    .await
                {
                    Ok(crate::ledger::Collected::Taken) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(replay_key = %replay_key, error = %e, "cannot clear an owed answer")
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Labels only from what we serve, so a stranger's invented networks cannot grow the
    /// metrics without bound.
    fn count_answer(
        &self,
        endpoint: &'static str,
        request: &PaymentRequest,
        outcome: &'static str,
        reason: &str,
    ) {
        let served = self
            .registry
            .lookup(request.x402_version(), request.scheme(), request.network())
            .is_ok();
        let (network, scheme) = if served {
            (request.network(), request.scheme())
        } else {
            ("other", "other")
        };
        let reason = if reason.len() <= 64
            && reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        {
            reason
        } else {
            "other"
        };
        self.metrics
            .count_answer(endpoint, network, scheme, outcome, reason);
    }

    /// The plugin's checks. `Err` inside `Ok` is a business rejection.
    async fn check(
        &self,
        handler: &dyn SchemeHandler,
        request: &PaymentRequest,
        phase: Phase,
        deadline: Deadline,
    ) -> Result<Result<CheckedPayment, Rejection>, FacilitatorError> {
        let span = Span::current();
        span.record("network", request.network());
        span.record("scheme", request.scheme());
        let checked = match phase {
            Phase::Verify => handler.check(request, deadline).await?,
            Phase::Settle => handler.check_settle(request, deadline).await?,
        };
        match checked {
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

    /// The request as the seller offered it, for the catalog. In schemes where the seller names
    /// the charge at settle (`upto`), the settle's `requirements.amount` is what this buyer was
    /// charged, not the price offered: the listed amount is the signed maximum, which `/verify`
    /// held equal to the offer (docs/schemes.md). Read from the payment itself, never from the
    /// buyer's `accepted` copy.
    fn as_offered<'r>(
        &self,
        request: &'r PaymentRequest,
        answer: &SettleResponse,
    ) -> std::borrow::Cow<'r, PaymentRequest> {
        use std::borrow::Cow;
        let (PaymentRequest::V2(r), true, Some(_)) = (request, answer.success, &answer.amount)
        else {
            return Cow::Borrowed(request);
        };
        let max = self
            .handler(request)
            .ok()
            .and_then(|h| h.revive(request).ok())
            .and_then(|p| p.meta.max_amount);
        let Some(max) = max else {
            return Cow::Borrowed(request);
        };
        let mut offered = r.clone();
        offered.payment_requirements.amount = max;
        Cow::Owned(PaymentRequest::V2(offered))
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

    /// A payment whose replay key is claimed, in flight or settled is not valid again, except
    /// for the payment itself while it is in flight or owed its outcome: a buyer who retries
    /// the same payment through the seller (its first attempt timed out) must be let through to
    /// the settle that answers it, not sent to sign a second payment.
    async fn replay_rejection(
        &self,
        handler: &dyn SchemeHandler,
        payment: &CheckedPayment,
        payment_id: Option<&str>,
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
        let same = settle::revive_stored(handler, &row.request)
            .is_ok_and(|(_, stored)| stored.meta.fingerprint == payment.meta.fingerprint);
        let owed = row.owed
            && row
                .payment_id
                .as_deref()
                .is_none_or(|id| Some(id) == payment_id);
        if same && (row.state != SettlementState::Settled || owed) {
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
        amount: None,
        extensions: None,
    }
}

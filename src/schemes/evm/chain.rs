//! The EVM chain connection: one long-lived HTTP client per RPC URL, and three ways to use them
//! (house style §6):
//! - [`Chain::read`]: the first URL that answers; a node's *verdict* (a revert, a validation
//!   error) is final, anything else (no answer, a rate limit, "header not found" from a lagging
//!   node, an internal error) moves on to the next URL;
//! - [`Chain::send`]: the same signed bytes to each URL in turn until one takes them: they have
//!   one hash, so they can be mined at most once, and a URL that refused the connection provably
//!   never saw them;
//! - [`Chain::each`]: the same read on every URL, for verdicts that must not rest on one node
//!   ("this transaction can never be mined").
//!
//! Every call is bounded by the request's [`Deadline`] as well as the per-call timeout. Small
//! caches keep facts that rarely change (whether an address has code).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::json_rpc::ErrorPayload;
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::transports::http::{Http, reqwest};
use alloy::transports::{RpcError, TransportErrorKind};

use crate::scheme::Deadline;

/// How long "this address has code" is trusted (contracts rarely vanish).
const CODE_TTL: Duration = Duration::from_secs(15 * 60);
/// How long "this address has no code" is trusted: a counterfactual wallet may deploy any time.
const NO_CODE_TTL: Duration = Duration::from_secs(30);
const CACHE_LIMIT: usize = 100_000;

/// A failed RPC call, split by what it tells us.
#[derive(Debug, Clone)]
pub enum RpcFailure {
    /// The node judged the call: a revert, or a validation error ("nonce too low", "insufficient
    /// funds", "replacement transaction underpriced"…). Another node would say the same.
    Node(ErrorPayload),
    /// No verdict: no answer, a bad HTTP status, an unreadable body, or a node error that says
    /// nothing about the call (rate limits, a lagging node, an internal error).
    Transport(String),
    /// The connection was refused before a byte of the request was sent.
    Unreachable(String),
}

impl RpcFailure {
    pub fn message(&self) -> String {
        match self {
            RpcFailure::Node(p) => p.message.to_string(),
            RpcFailure::Transport(m) | RpcFailure::Unreachable(m) => m.clone(),
        }
    }

    /// The raw revert data (a custom error's selector and arguments) when the node sent it.
    pub fn revert_data(&self) -> Option<Bytes> {
        let RpcFailure::Node(p) = self else {
            return None;
        };
        p.as_revert_data()
    }

    /// The revert reason when the node reported a revert.
    pub fn revert_text(&self) -> Option<String> {
        let RpcFailure::Node(p) = self else {
            return None;
        };
        let decoded = p
            .as_revert_data()
            .and_then(|data| alloy::sol_types::decode_revert_reason(data.as_ref()));
        if decoded.is_some() {
            return decoded;
        }
        let m = p.message.to_ascii_lowercase();
        (m.contains("revert") || p.code == 3).then(|| p.message.to_string())
    }
}

/// Whether a node's JSON-RPC error is a verdict on the call. Geth, Erigon, Nethermind, Reth and
/// anvil answer reverts with code 3 or -32000 and a text naming the cause; rate limits (-32005,
/// 429 texts), "header not found" (a node behind the head), timeouts and internal errors
/// (-32603) are the node's trouble, not the call's.
fn is_verdict(p: &ErrorPayload) -> bool {
    let m = p.message.to_ascii_lowercase();
    let trouble = [
        "rate limit",
        "too many requests",
        "limit exceeded",
        "header not found",
        "unknown block",
        "missing trie node",
        "timeout",
        "timed out",
        "internal error",
        "service unavailable",
        "capacity",
    ];
    if p.code == -32005 || p.code == -32603 || trouble.iter().any(|t| m.contains(t)) {
        return false;
    }
    true
}

impl From<RpcError<TransportErrorKind>> for RpcFailure {
    fn from(e: RpcError<TransportErrorKind>) -> Self {
        match e {
            RpcError::ErrorResp(p) if is_verdict(&p) => RpcFailure::Node(p),
            RpcError::ErrorResp(p) => RpcFailure::Transport(crate::scheme::redact_urls(&format!(
                "node error {}: {}",
                p.code, p.message
            ))),
            RpcError::Transport(TransportErrorKind::Custom(inner))
                if inner
                    .downcast_ref::<reqwest::Error>()
                    .is_some_and(|e| e.is_connect()) =>
            {
                RpcFailure::Unreachable(crate::scheme::redact_urls(&inner.to_string()))
            }
            other => RpcFailure::Transport(crate::scheme::redact_urls(&other.to_string())),
        }
    }
}

/// What became of sending signed bytes to every URL in turn.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A node took them (or already had them).
    Accepted,
    /// A node judged them (e.g. "nonce too low"): the verdict, for the caller to classify.
    Refused(RpcFailure),
    /// No node took them, and at least one may have received them (a cut connection, a
    /// timeout): they may be in a mempool.
    Ambiguous(String),
    /// Every URL refused the connection: the bytes never left this process.
    Unreachable(String),
}

pub struct Chain {
    providers: Vec<RootProvider>,
    /// The URLs as operators may see them (scheme and host only), in the providers' order.
    redacted: Vec<String>,
    timeout: Duration,
    code: Mutex<HashMap<Address, (bool, Instant)>>,
    /// The latest block number and when it was read, shared by every settle waiting for a
    /// receipt: one `eth_blockNumber` per poll interval, however many settles are waiting.
    head: tokio::sync::Mutex<(Option<Instant>, u64)>,
}

impl Chain {
    pub fn connect(urls: &[String], timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let providers = urls
            .iter()
            .map(|url| {
                let parsed = url
                    .parse()
                    .map_err(|e| format!("bad RPC URL {}: {e}", crate::config::redact_url(url)))?;
                let http = Http::with_client(client.clone(), parsed);
                let is_local = url.contains("127.0.0.1") || url.contains("localhost");
                Ok(RootProvider::new(RpcClient::new(http, is_local)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if providers.is_empty() {
            return Err("no RPC URL".into());
        }
        Ok(Chain {
            providers,
            redacted: urls.iter().map(|u| crate::config::redact_url(u)).collect(),
            timeout,
            code: Mutex::default(),
            head: tokio::sync::Mutex::new((None, 0)),
        })
    }

    /// One call on one provider, bounded by the per-call timeout and `deadline`.
    async fn call<T, Fut>(&self, deadline: Deadline, fut: Fut) -> Result<T, RpcFailure>
    where
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        match tokio::time::timeout(deadline.cap(self.timeout), fut).await {
            Ok(result) => result.map_err(RpcFailure::from),
            Err(_) => Err(RpcFailure::Transport(
                "no answer within the call's time bound".into(),
            )),
        }
    }

    /// Runs a read on the first URL that gives an answer or a verdict (module docs).
    pub async fn read<T, F, Fut>(&self, deadline: Deadline, f: F) -> Result<T, RpcFailure>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let mut last = RpcFailure::Transport("no RPC URL".into());
        for provider in &self.providers {
            if deadline.passed() {
                return Err(RpcFailure::Transport(
                    "the request's deadline passed".into(),
                ));
            }
            match self.call(deadline, f(provider.clone())).await {
                Ok(v) => return Ok(v),
                Err(verdict @ RpcFailure::Node(_)) => return Err(verdict),
                Err(other) => last = other,
            }
        }
        Err(last)
    }

    /// The same read on every URL, in order: one result per URL.
    pub async fn each<T, F, Fut>(&self, deadline: Deadline, f: F) -> Vec<Result<T, RpcFailure>>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let mut out = Vec::with_capacity(self.providers.len());
        for provider in &self.providers {
            out.push(self.call(deadline, f(provider.clone())).await);
        }
        out
    }

    /// The RPC URLs, redacted for display, in the order `on` numbers them.
    pub fn redacted_urls(&self) -> &[String] {
        &self.redacted
    }

    /// A read on URL number `url` only.
    pub async fn on<T, F, Fut>(&self, url: usize, deadline: Deadline, f: F) -> Result<T, RpcFailure>
    where
        F: FnOnce(RootProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let provider = self
            .providers
            .get(url)
            .ok_or_else(|| RpcFailure::Transport(format!("no RPC URL number {url}")))?;
        self.call(deadline, f(provider.clone())).await
    }

    /// Sends signed bytes to each URL in turn until one takes them (module docs). Once any URL
    /// may have received them, a later URL's refusal is no verdict on them (the first may
    /// still mine them): the outcome is then ambiguous.
    pub async fn send(&self, deadline: Deadline, raw: &[u8]) -> Sent {
        let mut ambiguous: Option<String> = None;
        let mut unreachable = String::new();
        for provider in &self.providers {
            if deadline.passed() {
                if ambiguous.is_none() {
                    // Nothing was tried: the bytes never left this process.
                    return Sent::Unreachable(
                        "the request's deadline passed before sending".into(),
                    );
                }
                break;
            }
            let sent = self
                .call(deadline, async {
                    provider.send_raw_transaction(raw).await.map(|_| ())
                })
                .await;
            match sent {
                Ok(()) => return Sent::Accepted,
                Err(RpcFailure::Node(p)) => {
                    let m = p.message.to_ascii_lowercase();
                    if m.contains("already known")
                        || m.contains("known transaction")
                        || m.contains("already imported")
                    {
                        return Sent::Accepted;
                    }
                    if let Some(why) = ambiguous {
                        return Sent::Ambiguous(format!(
                            "{why}; then another URL refused them ({})",
                            p.message
                        ));
                    }
                    return Sent::Refused(RpcFailure::Node(p));
                }
                Err(RpcFailure::Unreachable(m)) => unreachable = m,
                Err(RpcFailure::Transport(m)) => {
                    ambiguous.get_or_insert(m);
                }
            }
        }
        match ambiguous {
            Some(why) => Sent::Ambiguous(why),
            None => Sent::Unreachable(unreachable),
        }
    }

    pub async fn eth_call(
        &self,
        deadline: Deadline,
        to: Address,
        data: Bytes,
    ) -> Result<Bytes, RpcFailure> {
        self.eth_call_from(deadline, None, to, data).await
    }

    /// `eth_call` with `msg.sender` set (for contracts that check who calls them).
    pub async fn eth_call_from(
        &self,
        deadline: Deadline,
        from: Option<Address>,
        to: Address,
        data: Bytes,
    ) -> Result<Bytes, RpcFailure> {
        let mut tx = TransactionRequest::default()
            .to(to)
            .input(TransactionInput::new(data));
        if let Some(from) = from {
            tx = tx.from(from);
        }
        self.read(deadline, |p| {
            let tx = tx.clone();
            async move { p.call(tx).await }
        })
        .await
    }

    /// The chain head, at most `fresh` old. Concurrent callers share one read.
    pub async fn head(&self, deadline: Deadline, fresh: Duration) -> Result<u64, RpcFailure> {
        let mut head = self.head.lock().await;
        if let (Some(at), number) = *head
            && at.elapsed() < fresh
        {
            return Ok(number);
        }
        let number = self
            .read(deadline, |p| async move { p.get_block_number().await })
            .await?;
        *head = (Some(Instant::now()), number);
        Ok(number)
    }

    pub async fn has_code(&self, deadline: Deadline, address: Address) -> Result<bool, RpcFailure> {
        if let Some(known) = self.cached_code(address) {
            return Ok(known);
        }
        let code = self
            .read(deadline, |p| async move { p.get_code_at(address).await })
            .await?;
        let has = !code.is_empty();
        if let Ok(mut cache) = self.code.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(address, (has, Instant::now()));
        }
        Ok(has)
    }

    fn cached_code(&self, address: Address) -> Option<bool> {
        let cache = self.code.lock().ok()?;
        let (has, at) = cache.get(&address)?;
        let ttl = if *has { CODE_TTL } else { NO_CODE_TTL };
        (at.elapsed() < ttl).then_some(*has)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(code: i64, message: &str) -> ErrorPayload {
        ErrorPayload {
            code,
            message: message.to_string().into(),
            data: None,
        }
    }

    #[test]
    fn only_verdicts_are_final() {
        assert!(is_verdict(&payload(
            3,
            "execution reverted: FiatTokenV2: authorization is used"
        )));
        assert!(is_verdict(&payload(-32000, "nonce too low")));
        assert!(is_verdict(&payload(
            -32000,
            "replacement transaction underpriced"
        )));
        assert!(!is_verdict(&payload(
            -32005,
            "daily request count exceeded"
        )));
        assert!(!is_verdict(&payload(-32000, "header not found")));
        assert!(!is_verdict(&payload(-32603, "internal error")));
        assert!(!is_verdict(&payload(429, "Too Many Requests")));
    }
}

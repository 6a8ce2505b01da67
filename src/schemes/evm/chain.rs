//! The EVM chain connection: one long-lived HTTP client per RPC URL, reads that fail over between
//! URLs, sends that go to one URL only (house style §6), and small caches for facts that rarely
//! change (whether an address has code).

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

/// How long "this address has code" is trusted (contracts rarely vanish).
const CODE_TTL: Duration = Duration::from_secs(15 * 60);
/// How long "this address has no code" is trusted: a counterfactual wallet may deploy any time.
const NO_CODE_TTL: Duration = Duration::from_secs(30);
const CACHE_LIMIT: usize = 100_000;

/// A failed RPC call, split by what it tells us.
#[derive(Debug, Clone)]
pub enum RpcFailure {
    /// The node answered with a JSON-RPC error (a revert, "nonce too low", …).
    Node(ErrorPayload),
    /// No answer: connection refused, timeout, bad HTTP status, unreadable body.
    Transport(String),
}

impl RpcFailure {
    pub fn message(&self) -> String {
        match self {
            RpcFailure::Node(p) => p.message.to_string(),
            RpcFailure::Transport(m) => m.clone(),
        }
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

impl From<RpcError<TransportErrorKind>> for RpcFailure {
    fn from(e: RpcError<TransportErrorKind>) -> Self {
        match e {
            RpcError::ErrorResp(p) => RpcFailure::Node(p),
            other => RpcFailure::Transport(crate::scheme::redact_urls(&other.to_string())),
        }
    }
}

pub struct Chain {
    providers: Vec<RootProvider>,
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
                let parsed = url.parse().map_err(|e| format!("bad RPC URL: {e}"))?;
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
            code: Mutex::default(),
            head: tokio::sync::Mutex::new((None, 0)),
        })
    }

    /// Runs a read on the first URL that answers. A node's own error is final (another node
    /// would say the same); only transport failures move on to the next URL.
    pub async fn read<T, F, Fut>(&self, f: F) -> Result<T, RpcFailure>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let mut last = RpcFailure::Transport("no RPC URL".into());
        for provider in &self.providers {
            match f(provider.clone()).await.map_err(RpcFailure::from) {
                Ok(v) => return Ok(v),
                Err(node @ RpcFailure::Node(_)) => return Err(node),
                Err(transport) => last = transport,
            }
        }
        Err(last)
    }

    /// The one URL transactions are sent to: a send is never raced across RPCs.
    pub fn sender(&self) -> &RootProvider {
        &self.providers[0]
    }

    pub async fn eth_call(&self, to: Address, data: Bytes) -> Result<Bytes, RpcFailure> {
        let tx = TransactionRequest::default()
            .to(to)
            .input(TransactionInput::new(data));
        self.read(|p| {
            let tx = tx.clone();
            async move { p.call(tx).await }
        })
        .await
    }

    /// The chain head, at most `fresh` old. Concurrent callers share one read.
    pub async fn head(&self, fresh: Duration) -> Result<u64, RpcFailure> {
        let mut head = self.head.lock().await;
        if let (Some(at), number) = *head
            && at.elapsed() < fresh
        {
            return Ok(number);
        }
        let number = self
            .read(|p| async move { p.get_block_number().await })
            .await?;
        *head = (Some(Instant::now()), number);
        Ok(number)
    }

    pub async fn has_code(&self, address: Address) -> Result<bool, RpcFailure> {
        if let Some(known) = self.cached_code(address) {
            return Ok(known);
        }
        let code = self
            .read(|p| async move { p.get_code_at(address).await })
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

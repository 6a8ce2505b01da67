//! A plain Solana JSON-RPC client: one pooled HTTP client, reads that fail over between URLs,
//! sends to the first URL only (house style §6).

use std::time::Duration;

use alloy::transports::http::reqwest;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum RpcFailure {
    /// The node answered with a JSON-RPC error.
    Node {
        code: i64,
        message: String,
        data: Value,
    },
    /// No usable answer (connection, timeout, HTTP status, body).
    Transport(String),
}

impl RpcFailure {
    pub fn message(&self) -> String {
        match self {
            RpcFailure::Node { code, message, .. } => format!("{message} (code {code})"),
            RpcFailure::Transport(m) => m.clone(),
        }
    }
}

pub struct SolanaRpc {
    client: reqwest::Client,
    urls: Vec<String>,
}

impl SolanaRpc {
    pub fn new(urls: &[String], timeout: Duration) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no RPC URL".into());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(SolanaRpc {
            client,
            urls: urls.to_vec(),
        })
    }

    /// The configured URLs, in the order reads try them (secrets included: never display).
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub async fn call_at(
        &self,
        url: &str,
        method: &str,
        params: &Value,
    ) -> Result<Value, RpcFailure> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| RpcFailure::Transport(format!("{method}: {}", e.without_url())))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| {
            RpcFailure::Transport(format!("{method}: unreadable answer ({status}): {e}"))
        })?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            RpcFailure::Transport(format!("{method}: non-JSON answer ({status}): {e}"))
        })?;
        if let Some(err) = answer.get("error") {
            return Err(RpcFailure::Node {
                code: err.get("code").and_then(Value::as_i64).unwrap_or_default(),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                data: err.get("data").cloned().unwrap_or(Value::Null),
            });
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| RpcFailure::Transport(format!("{method}: no result ({status})")))
    }

    /// A read, tried on each URL in turn until one answers (a node's own error is final).
    pub async fn read(&self, method: &str, params: Value) -> Result<Value, RpcFailure> {
        let mut last = RpcFailure::Transport("no RPC URL".into());
        for url in &self.urls {
            match self.call_at(url, method, &params).await {
                Ok(v) => return Ok(v),
                Err(node @ RpcFailure::Node { .. }) => return Err(node),
                Err(t) => last = t,
            }
        }
        Err(last)
    }

    /// A send: to the first URL only, never raced across nodes.
    pub async fn send(&self, method: &str, params: Value) -> Result<Value, RpcFailure> {
        self.call_at(&self.urls[0], method, &params).await
    }
}

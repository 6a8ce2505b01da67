//! The Solana RPC: the official nonblocking `RpcClient` (its request and response types, its
//! typed calls) over a transport of ours, [`CappedSender`], one client per configured URL.
//!
//! Why our own `RpcSender` and not the crate's `HttpSender` (measured in the crate's source,
//! `http_sender.rs`, agave 4.2.2): it reads any body whole (no size cap), and on HTTP 429 it
//! sleeps `Retry-After` (up to two minutes, five times) outside any timeout, so one call could
//! outlive the request's deadline. Ours caps the body at [`MAX_BODY`], never retries (the next
//! URL is the retry), is bounded by the request's [`Deadline`] at every call, and tells a
//! connection that was never made (nothing reached the node) from one cut after the request was
//! written (it may have been processed), which the send classification needs (house style §6).
//!
//! One client per URL, because a verdict is one node's own: "expired, no money moved" pairs a
//! node's signature status with the same node's blockhash validity, never two nodes' answers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use alloy::transports::http::reqwest;
use async_trait::async_trait;
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client::rpc_client::RpcClientConfig;
use solana_rpc_client::rpc_sender::{RpcSender, RpcTransportStats};
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind};
use solana_rpc_client_api::custom_error::{
    JSON_RPC_SERVER_ERROR_NODE_UNHEALTHY, JSON_RPC_SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE,
    NodeUnhealthyErrorData,
};
use solana_rpc_client_api::error_object::RpcErrorObject;
use solana_rpc_client_api::request::{RpcError, RpcRequest, RpcResponseErrorData};
use solana_rpc_client_api::response::RpcSimulateTransactionResult;

use crate::scheme::{Deadline, redact_urls};

/// The largest answer read from a node. Every answer we ask for is a few KiB (an account of a
/// mint with extensions, a simulation's logs); a hostile or broken node cannot make us buffer
/// more than this.
pub const MAX_BODY: usize = 1 << 20;

/// Why a call has no answer.
#[derive(Debug)]
pub enum RpcFailure {
    /// The node answered with a JSON-RPC error; `data` as the official types decode it (the
    /// preflight result of -32002, the lag of -32005).
    Node {
        code: i64,
        message: String,
        data: Box<RpcResponseErrorData>,
    },
    /// No usable answer. `reached` is false only when the connection was never made, so the
    /// request provably never reached the node.
    Transport { reached: bool, message: String },
}

impl RpcFailure {
    pub fn message(&self) -> String {
        match self {
            RpcFailure::Node { code, message, .. } => format!("{message} (code {code})"),
            RpcFailure::Transport { message, .. } => message.clone(),
        }
    }

    fn from_client(e: ClientError) -> Self {
        match *e.kind {
            ErrorKind::RpcError(RpcError::RpcResponseError {
                code,
                message,
                data,
            }) => RpcFailure::Node {
                code,
                message,
                data: Box::new(data),
            },
            ErrorKind::Io(io) => RpcFailure::Transport {
                reached: io.kind() != io::ErrorKind::ConnectionRefused,
                message: redact_urls(&io.to_string()),
            },
            other => RpcFailure::Transport {
                reached: true,
                message: redact_urls(&format!("unexpected answer: {other}")),
            },
        }
    }
}

/// The transport under one `RpcClient`: one HTTP POST per call to one URL.
pub struct CappedSender {
    http: reqwest::Client,
    url: String,
}

fn io_error(reached: bool, message: String) -> ClientError {
    let kind = if reached {
        io::ErrorKind::Other
    } else {
        io::ErrorKind::ConnectionRefused
    };
    ErrorKind::Io(io::Error::new(kind, message)).into()
}

/// A JSON-RPC error object decoded as the official `HttpSender` does, so that the client's
/// typed helpers (`get_transaction_error`) see the same values.
fn node_error(error: &Value) -> ClientError {
    let Ok(object) = serde_json::from_value::<RpcErrorObject>(error.clone()) else {
        return io_error(true, format!("unreadable JSON-RPC error: {error}"));
    };
    let data = match object.code {
        JSON_RPC_SERVER_ERROR_SEND_TRANSACTION_PREFLIGHT_FAILURE => {
            serde_json::from_value::<RpcSimulateTransactionResult>(error["data"].clone())
                .map(RpcResponseErrorData::SendTransactionPreflightFailure)
                .unwrap_or(RpcResponseErrorData::Empty)
        }
        JSON_RPC_SERVER_ERROR_NODE_UNHEALTHY => {
            serde_json::from_value::<NodeUnhealthyErrorData>(error["data"].clone())
                .map(|d| RpcResponseErrorData::NodeUnhealthy {
                    num_slots_behind: d.num_slots_behind,
                })
                .unwrap_or(RpcResponseErrorData::Empty)
        }
        _ => RpcResponseErrorData::Empty,
    };
    RpcError::RpcResponseError {
        code: object.code,
        message: object.message,
        data,
    }
    .into()
}

impl CappedSender {
    async fn body(mut resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(io_error(true, "answer larger than 1 MiB".into()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(io_error(
                        true,
                        format!("answer cut off: {}", e.without_url()),
                    ));
                }
            }
        }
    }
}

#[async_trait]
impl RpcSender for CappedSender {
    async fn send(&self, request: RpcRequest, params: Value) -> Result<Value, ClientError> {
        let body = request.build_request_json(1, params);
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                // A connect error (refused, DNS, TLS handshake) means the request was never
                // written; anything after that may have reached the node.
                io_error(!e.is_connect(), format!("{request}: {}", e.without_url()))
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(io_error(true, format!("{request}: HTTP {status}")));
        }
        let bytes = Self::body(resp).await?;
        let mut answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(true, format!("{request}: non-JSON answer: {e}")))?;
        if answer.get("error").is_some_and(Value::is_object) {
            return Err(node_error(&answer["error"]));
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(io_error(true, format!("{request}: answer has no result"))),
        }
    }

    fn get_transport_stats(&self) -> RpcTransportStats {
        RpcTransportStats::default()
    }

    fn url(&self) -> String {
        redact_urls(&self.url)
    }
}

/// A boxed call on one client, for [`SolanaRpc::read`].
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// One configured node.
pub struct Node {
    pub client: RpcClient,
    /// Scheme and host only (`config::redact_url`), for operators' probes.
    pub shown: String,
}

pub struct SolanaRpc {
    nodes: Vec<Node>,
    timeout: Duration,
}

impl SolanaRpc {
    pub fn new(urls: &[String], timeout: Duration) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no RPC URL".into());
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let nodes = urls
            .iter()
            .map(|url| Node {
                shown: crate::config::redact_url(url),
                client: RpcClient::new_sender(
                    CappedSender {
                        http: http.clone(),
                        url: url.clone(),
                    },
                    // Every call names its commitment; this default (the crate's is
                    // `finalized`) is only a fallback.
                    RpcClientConfig::with_commitment(CommitmentConfig::confirmed()),
                ),
            })
            .collect();
        Ok(SolanaRpc { nodes, timeout })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One call on one node, bounded by the per-call timeout and what is left of `deadline`.
    pub async fn on<T>(
        &self,
        deadline: Deadline,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, RpcFailure> {
        match tokio::time::timeout(deadline.cap(self.timeout), call).await {
            Ok(answer) => answer.map_err(RpcFailure::from_client),
            Err(_) => Err(RpcFailure::Transport {
                reached: true,
                message: "no answer within the call's time bound".into(),
            }),
        }
    }

    /// A read, tried on each node in turn until one answers. A node's error is no verdict on a
    /// payment (rate limit, lag, a pruned history), so it moves on too; the last failure is
    /// returned when none answers.
    pub async fn read<T>(
        &self,
        deadline: Deadline,
        call: impl for<'a> Fn(&'a RpcClient) -> Call<'a, T>,
    ) -> Result<T, RpcFailure> {
        let mut last = RpcFailure::Transport {
            reached: false,
            message: "no RPC URL".into(),
        };
        for node in &self.nodes {
            if deadline.passed() {
                break;
            }
            match self.on(deadline, call(&node.client)).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_decode_like_the_official_sender() {
        let preflight = serde_json::json!({
            "code": -32002,
            "message": "Transaction simulation failed: Blockhash not found",
            "data": { "err": "BlockhashNotFound", "logs": [] },
        });
        let e = RpcFailure::from_client(node_error(&preflight));
        let RpcFailure::Node { code, data, .. } = e else {
            panic!("a node error");
        };
        assert_eq!(code, -32002);
        assert!(matches!(
            *data,
            RpcResponseErrorData::SendTransactionPreflightFailure(RpcSimulateTransactionResult {
                err: Some(_),
                ..
            })
        ));
        let unknown = serde_json::json!({ "code": -32603, "message": "internal", "data": 7 });
        assert!(matches!(
            RpcFailure::from_client(node_error(&unknown)),
            RpcFailure::Node { code: -32603, .. }
        ));
        assert!(matches!(
            RpcFailure::from_client(node_error(&serde_json::json!("nope"))),
            RpcFailure::Transport { reached: true, .. }
        ));
    }

    #[test]
    fn a_refused_connection_never_reached_the_node() {
        assert!(matches!(
            RpcFailure::from_client(io_error(false, "refused".into())),
            RpcFailure::Transport { reached: false, .. }
        ));
        assert!(matches!(
            RpcFailure::from_client(io_error(true, "cut".into())),
            RpcFailure::Transport { reached: true, .. }
        ));
    }
}

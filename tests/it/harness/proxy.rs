//! A loopback HTTP proxy in front of the chain's JSON-RPC that a test can make misbehave: a real
//! peer that hangs, refuses, answers slowly, answers every call with a node error, or swallows
//! sends, not a mocked client. It speaks HTTP/1.1 with keep-alive, reading each request whole,
//! so that a pooled connection changes behaviour as soon as the test says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Read the request, answer nothing, keep the connection open: the caller waits.
    Hang,
    /// Close the connection as soon as a request arrives (after the TCP connection was made).
    Refuse,
    /// Forward, but answer only after this delay.
    Delay(Duration),
    /// Answer every call with the JSON-RPC error a rate-limited provider sends (-32005).
    NodeError,
    /// Swallow `eth_sendRawTransaction` (hang), forward every other call.
    DropSends,
    /// Forward `eth_sendRawTransaction` to the node, but never answer it (the node has the
    /// transaction; the caller cannot know): forward every other call.
    SendThenHang,
    /// Answer `eth_sendRawTransaction` with this node error (-32000), forward every other call.
    RefuseSends(&'static str),
    /// A Solana node that has not seen what the chain did: forwards everything, but answers
    /// `isBlockhashValid` with false and `getSignatureStatuses` with unknown (a lagging node,
    /// or one on another fork).
    SolanaBehind,
    /// Forwards `sendTransaction` (so the transaction really reaches the chain), then answers it
    /// with an unknown JSON-RPC error, as a load balancer whose upstream timed out does.
    ErrorAfterSend,
    /// Answers this method with a result whose `value` is an empty object (a broken proxy),
    /// forwards every other call.
    EmptyResult(&'static str),
    /// Answers this method with a 2 MiB result (a broken or hostile node), forwards the rest.
    HugeAnswer(&'static str),
}

pub struct RpcProxy {
    pub url: String,
    mode: Arc<Mutex<Mode>>,
}

impl RpcProxy {
    pub async fn start(upstream: &str) -> RpcProxy {
        let upstream = upstream.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mode = Arc::new(Mutex::new(Mode::Forward));
        let m = mode.clone();
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, upstream, http) = (m.clone(), upstream.clone(), http.clone());
                tokio::spawn(async move { serve(client, &upstream, &http, m).await });
            }
        });
        RpcProxy { url, mode }
    }

    pub fn set(&self, mode: Mode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
    }
}

/// A loopback URL where nothing listens: connecting is refused, so nothing is ever sent.
pub async fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

fn current(mode: &Mutex<Mode>) -> Mode {
    mode.lock().map(|m| *m).unwrap_or(Mode::Forward)
}

/// One HTTP request: its body (the JSON-RPC call).
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut length = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if first {
            first = false;
            continue;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn serve(client: TcpStream, upstream: &str, http: &reqwest::Client, mode: Arc<Mutex<Mode>>) {
    let mut reader = BufReader::new(client);
    while let Some(body) = read_request(&mut reader).await {
        let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let answer = match current(&mode) {
            Mode::Refuse => return,
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::DropSends if call["method"] == "eth_sendRawTransaction" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::SendThenHang if call["method"] == "eth_sendRawTransaction" => {
                let _ = http
                    .post(upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::RefuseSends(message) if call["method"] == "eth_sendRawTransaction" => {
                json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": message}})
                    .to_string()
                    .into_bytes()
            }
            Mode::SolanaBehind if call["method"] == "isBlockhashValid" => {
                json!({"jsonrpc": "2.0", "id": call["id"], "result": {"context": {"slot": 1}, "value": false}})
                    .to_string()
                    .into_bytes()
            }
            Mode::SolanaBehind if call["method"] == "getSignatureStatuses" => {
                let unknown: Vec<Value> = call["params"][0]
                    .as_array()
                    .map(|s| s.iter().map(|_| Value::Null).collect())
                    .unwrap_or_default();
                json!({"jsonrpc": "2.0", "id": call["id"], "result": {"context": {"slot": 1}, "value": unknown}})
                    .to_string()
                    .into_bytes()
            }
            Mode::EmptyResult(method) if call["method"] == method => {
                json!({"jsonrpc": "2.0", "id": call["id"], "result": {"context": {"slot": 1}, "value": {}}})
                    .to_string()
                    .into_bytes()
            }
            Mode::HugeAnswer(method) if call["method"] == method => {
                let filler = "x".repeat(2 << 20);
                json!({"jsonrpc": "2.0", "id": call["id"], "result": {"context": {"slot": 1}, "value": {"err": null, "logs": [filler]}}})
                    .to_string()
                    .into_bytes()
            }
            Mode::ErrorAfterSend if call["method"] == "sendTransaction" => {
                let forwarded = http
                    .post(upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                if forwarded.is_err() {
                    return;
                }
                json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32603, "message": "Internal error: upstream request timed out"}})
                    .to_string()
                    .into_bytes()
            }
            Mode::NodeError => {
                let error = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32005, "message": "daily request count exceeded, request rate limited"}});
                let answer = match &call {
                    Value::Array(batch) => {
                        Value::Array(batch.iter().map(|c| error(&c["id"])).collect())
                    }
                    single => error(&single["id"]),
                };
                answer.to_string().into_bytes()
            }
            other => {
                if let Mode::Delay(d) = other {
                    tokio::time::sleep(d).await;
                }
                let forwarded = http
                    .post(upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match forwarded {
                    Ok(r) => r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
                    Err(_) => return,
                }
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let stream = reader.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&answer).await.is_err()
        {
            return;
        }
    }
}

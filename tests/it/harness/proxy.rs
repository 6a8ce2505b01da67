//! A loopback TCP proxy in front of the chain's RPC that a test can switch between forwarding,
//! hanging (accepting bytes, answering nothing) and refusing: a real peer that misbehaves, not a
//! mocked client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Forward = 0,
    Hang = 1,
    Refuse = 2,
}

pub struct RpcProxy {
    pub url: String,
    mode: Arc<AtomicU8>,
}

impl RpcProxy {
    pub async fn start(upstream: &str) -> RpcProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let m = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let m = m.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move { relay(client, &upstream, m).await });
            }
        });
        RpcProxy { url, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

fn current(mode: &AtomicU8) -> Mode {
    match mode.load(Ordering::SeqCst) {
        0 => Mode::Forward,
        1 => Mode::Hang,
        _ => Mode::Refuse,
    }
}

/// Relays one connection chunk by chunk, consulting the mode before each client chunk, so a
/// pooled keep-alive connection starts hanging as soon as the test says so.
async fn relay(mut client: TcpStream, upstream: &str, mode: Arc<AtomicU8>) {
    if current(&mode) == Mode::Refuse {
        return; // dropped: the client sees the connection closed
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut server_read, mut server_write) = server.into_split();
    let (mut client_read, mut client_write) = client.split();
    let upstream_to_client = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let client_to_upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            match current(&mode) {
                Mode::Forward => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                // Swallow the request and keep the connection open: the caller waits.
                Mode::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                Mode::Refuse => break,
            }
        }
    };
    tokio::select! {
        _ = upstream_to_client => {}
        _ = client_to_upstream => {}
    }
}

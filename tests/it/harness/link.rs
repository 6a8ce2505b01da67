//! A loopback TCP link in front of the test Postgres that a test can stall: a replica whose
//! connection to its ledger lags for seconds (a congested network, a paused VM), for real.
//! Bytes are held, not dropped: once the link resumes, every query goes on where it stopped.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct StallableLink {
    /// `url` with its host and port replaced by the link's.
    pub url: String,
    stalled: watch::Sender<bool>,
}

impl StallableLink {
    /// A link to the Postgres of `url` (`postgres://user@host:port/db`).
    pub async fn to_postgres(url: &str) -> StallableLink {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').expect("a database path");
        let (user, host_port) = authority
            .rsplit_once('@')
            .map_or(("", authority), |(u, h)| (u, h));
        let upstream = host_port.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("addr");
        let at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        let url = format!("{scheme}://{at}{local}/{path}");
        let (stalled, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        pipe(cr, sw, watching.clone()),
                        pipe(sr, cw, watching.clone())
                    );
                });
            }
        });
        StallableLink { url, stalled }
    }

    /// Holds every byte in both directions until `resume`.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }
}

/// Copies `from` to `to`, holding what it read while the link is stalled.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

//! The facilitator as a separate OS process (the real binary), for tests that kill it, restart it,
//! or run two replicas side by side.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct Proc {
    child: Child,
    pub base: String,
    stderr_lines: mpsc::UnboundedReceiver<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Proc {
    /// Starts `x402-facilitator serve` with `env` and waits until `/health` answers.
    pub async fn start(env: &[(String, String)]) -> Proc {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_x402-facilitator"))
            .args(["serve", "--port", &port.to_string()])
            .envs(env.iter().cloned())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Proc {
                    child,
                    base,
                    stderr_lines: rx,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("facilitator process did not become healthy");
    }

    /// Waits for a stderr line containing `needle` (e.g. the fault-injection marker).
    pub async fn wait_for_log(&mut self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.stderr_lines.recv().await {
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "the process never logged `{needle}`");
    }

    /// SIGKILL: no shutdown path runs.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL delivered");
    }
}

/// Waits until the process at `base` holds a signer lease (its `/ready` lists one), failing
/// after `within`.
pub async fn holds_a_key(base: &str, within: Duration) {
    let started = std::time::Instant::now();
    loop {
        let held = match reqwest::get(format!("{base}/ready")).await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["signers"].as_object().map(|s| s.len()))
                .unwrap_or(0),
            Err(_) => 0,
        };
        if held > 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{base} never took a signer key within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! The real application on a loopback port, configured like an operator would: through
//! `X402__…` settings pointing at the test chain and database.

use std::time::Duration;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use x402_facilitator::app::Application;
use x402_facilitator::config::Settings;

use super::chain::Chain;
use super::db::Db;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub signers: Vec<PrivateKeySigner>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// What a test may change from the defaults.
#[derive(Default)]
pub struct Options {
    pub signers: usize,
    pub env: Vec<(String, String)>,
    pub unfunded: bool,
    /// Talk to the chain through this URL (e.g. a misbehaving proxy) instead of anvil's.
    pub rpc_url: Option<String>,
}

impl Options {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

pub async fn spawn(chain: &Chain, db: &Db) -> TestApp {
    spawn_with(chain, db, Options::default()).await
}

/// Fresh signer keys, funded with gas money on `chain` unless `unfunded`.
pub async fn signers(chain: &Chain, n: usize, unfunded: bool) -> Vec<PrivateKeySigner> {
    let signers: Vec<PrivateKeySigner> =
        (0..n.max(1)).map(|_| PrivateKeySigner::random()).collect();
    if !unfunded {
        for s in &signers {
            chain.fund(s.address(), U256::from(10u128.pow(20))).await;
        }
    }
    signers
}

/// Settings every test app shares: a random port, the test ledger, short test timings.
pub fn base_env(db: &Db) -> Vec<(String, String)> {
    let pairs = [
        ("X402__SERVER__PORT", "0".to_string()),
        ("X402__DATABASE__URL", db.url()),
        ("X402__DATABASE__MAX_CONNECTIONS", "8".into()),
        // CI is 2 cores running many apps at once: a connection may take seconds to come.
        ("X402__DATABASE__ACQUIRE_TIMEOUT_MS", "15000".into()),
        // Tests hammer the app from loopback; the rate-limit tests clear this.
        ("X402__RATE_LIMIT__EXEMPT", "127.0.0.0/8".into()),
        ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "5000".into()),
        ("X402__SETTLEMENT__LEASE_MARGIN_MS", "500".into()),
        ("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "200".into()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The settings an operator would give to serve `chain` (through `rpc_url`) with `signers` on `db`.
pub fn env_for(
    chain: &Chain,
    rpc_url: &str,
    db: &Db,
    signers: &[PrivateKeySigner],
) -> Vec<(String, String)> {
    let keys = signers
        .iter()
        .map(|s| format!("0x{}", alloy::primitives::hex::encode(s.to_bytes())))
        .collect::<Vec<_>>()
        .join(",");
    let pairs = [
        ("X402__SERVER__PORT", "0".to_string()),
        ("X402__DATABASE__URL", db.url()),
        ("X402__DATABASE__MAX_CONNECTIONS", "8".into()),
        // CI is 2 cores running many apps at once: a connection may take seconds to come.
        ("X402__DATABASE__ACQUIRE_TIMEOUT_MS", "15000".into()),
        // Tests hammer the app from loopback; the rate-limit tests clear this.
        ("X402__RATE_LIMIT__EXEMPT", "127.0.0.0/8".into()),
        ("X402__SETTLEMENT__CONFIRM_TIMEOUT_MS", "5000".into()),
        ("X402__SETTLEMENT__LEASE_MARGIN_MS", "500".into()),
        ("X402__SETTLEMENT__RECONCILE_INTERVAL_MS", "200".into()),
        (
            "X402__NETWORKS__LOCAL__NETWORK",
            format!("eip155:{}", chain.chain_id),
        ),
        ("X402__NETWORKS__LOCAL__RPC_URLS", rpc_url.to_string()),
        ("X402__NETWORKS__LOCAL__SIGNER_KEYS", keys),
        ("X402__NETWORKS__LOCAL__RECEIPT_POLL_MS", "20".into()),
        // The test tokens are not the presets' stablecoins (on chain ids that have a preset,
        // e.g. 84532 for the v1 tests, the default policy would refuse them).
        ("X402__NETWORKS__LOCAL__POLICY__ASSETS", "any".into()),
        (
            "X402__NETWORKS__LOCAL__EIP6492_FACTORIES",
            format!("{:#x}", chain.factory),
        ),
    ];
    let mut env = base_env(db);
    env.extend(pairs.into_iter().map(|(k, v)| (k.to_string(), v)));
    env
}

pub async fn spawn_with(chain: &Chain, db: &Db, options: Options) -> TestApp {
    let signers = signers(chain, options.signers, options.unfunded).await;
    let rpc_url = options.rpc_url.clone().unwrap_or_else(|| chain.url.clone());
    let mut env = env_for(chain, &rpc_url, db, &signers);
    env.extend(options.env);
    spawn_env(env, signers).await
}

/// Starts the real app from operator settings (`X402__…` pairs).
pub async fn spawn_env(env: Vec<(String, String)>, signers: Vec<PrivateKeySigner>) -> TestApp {
    let settings = Settings::load_with_env(None, env).expect("test settings are valid");
    x402_facilitator::telemetry::init(settings.server.log_format);
    let app = Application::build(&settings)
        .await
        .expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        signers,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"));
        (status, json)
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.json().await.expect("JSON"))
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    pub async fn verify(&self, body: &Value) -> Value {
        let (status, json) = self.post("/verify", body).await;
        assert_eq!(status, StatusCode::OK, "verify answered {status}: {json}");
        json
    }

    pub async fn settle(&self, body: &Value) -> Value {
        let (status, json) = self.post("/settle", body).await;
        assert_eq!(status, StatusCode::OK, "settle answered {status}: {json}");
        json
    }

    /// Stops the server and waits for it (in-flight settles included).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

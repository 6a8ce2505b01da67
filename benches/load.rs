//! Load benchmark: our facilitator (release build) beside the official TypeScript facilitator, on
//! one local anvil, driven by wrk on loopback. Run it through `bench/run`, which provisions the
//! tools and builds the release binary; `cargo bench --bench load -- --help` lists the options.
//!
//! Per point it prints requests/s, p50/p95/p99 latency, answers by HTTP status and reason, the
//! facilitator's CPU time per request (from /proc/PID/stat), its peak RSS (VmHWM) and the JSON-RPC
//! calls it made per request (counted by a loopback proxy in front of anvil). Every run is bounded
//! in time and request count and stops everything it started.

// The integration tests' chain, database and payment builders, shared rather than copied.
#[path = "../tests/it/harness/chain.rs"]
#[allow(dead_code)]
mod chain;
#[path = "../tests/it/harness/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "../tests/it/harness/payment.rs"]
#[allow(dead_code)]
mod payment;
#[path = "../tests/it/harness/permit2.rs"]
#[allow(dead_code)]
mod permit2;
#[path = "../tests/it/harness/script.rs"]
#[allow(dead_code)]
mod script;
#[path = "../tests/it/harness/solana.rs"]
#[allow(dead_code)]
mod solana;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{U256, hex};
use alloy::signers::local::PrivateKeySigner;
use chain::Chain;
use db::Db;
use payment::Payment;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Options {
    solana: bool,
    /// Only the Solana point (to compare it across a change without the EVM points' cost).
    only_solana: bool,
    /// Only the identical-replicas point (Postgres).
    only_replicas: bool,
    /// Only the sessions point (and its profile with `X402_BENCH_PROFILE`).
    only_sessions: bool,
    db: String,
    seconds: u64,
    settles: usize,
    slow_settles: usize,
    upto_settles: usize,
    replica_settles: usize,
    reference: bool,
    /// The cost curve: `/verify` at 1 to 1 024 connections, `/settle` with 1, 4 and 16 keys.
    scaling: bool,
    /// Ours without the access gate, budgets and discovery (`--bare`), to see what they cost.
    bare: bool,
}

/// Whether ours runs as a public deployment would (set once from `--bare` before any point):
/// API keys required, rate limits on for everyone, fee budgets on every counter, the
/// discovery catalogue and sessions on. Read where processes are started.
static BARE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn options() -> Options {
    let mut o = Options {
        solana: true,
        only_solana: false,
        only_replicas: false,
        only_sessions: false,
        db: "sqlite".into(),
        seconds: 5,
        settles: 500,
        slow_settles: 60,
        upto_settles: 500,
        replica_settles: 300,
        reference: true,
        scaling: true,
        bare: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => o.db = it.next().cloned().unwrap_or_default(),
            "--seconds" => o.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            "--settles" => o.settles = it.next().and_then(|v| v.parse().ok()).unwrap_or(500),
            "--slow-settles" => {
                o.slow_settles = it.next().and_then(|v| v.parse().ok()).unwrap_or(60)
            }
            "--upto-settles" => {
                o.upto_settles = it.next().and_then(|v| v.parse().ok()).unwrap_or(500)
            }
            "--replica-settles" => {
                o.replica_settles = it.next().and_then(|v| v.parse().ok()).unwrap_or(300)
            }
            "--no-reference" => o.reference = false,
            "--bare" => o.bare = true,
            "--no-scaling" => o.scaling = false,
            "--no-solana" => o.solana = false,
            "--only-solana" => o.only_solana = true,
            "--only-replicas" => o.only_replicas = true,
            "--only-sessions" => o.only_sessions = true,
            "--bench" => {}
            "--help" | "-h" => {
                println!(
                    "load [--db sqlite|postgres] [--seconds N] [--settles N] [--slow-settles N] [--upto-settles N] [--replica-settles N] [--no-reference] [--no-solana] [--no-scaling] [--bare] [--only-solana] [--only-replicas] [--only-sessions]"
                );
                std::process::exit(0);
            }
            other => eprintln!("ignoring argument {other}"),
        }
    }
    o
}

/// A loopback proxy in front of anvil that counts JSON-RPC calls (each element of a batch).
struct CountingProxy {
    url: String,
    calls: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (c, upstream) = (c.clone(), upstream.clone());
                tokio::spawn(async move { relay(client, &upstream, c).await });
            }
        });
        CountingProxy { url, calls }
    }

    fn count(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

async fn relay(mut client: TcpStream, upstream: &str, calls: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut sr, mut sw) = server.into_split();
    let (mut cr, mut cw) = client.split();
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let hits = buf[..n].windows(8).filter(|w| w == b"\"method\"").count();
            calls.fetch_add(hits as u64, Ordering::Relaxed);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! { _ = down => {}, _ = up => {} }
}

/// A facilitator under test: its processes (one, or identical replicas behind a round-robin
/// balancer), its address, its RPC counter.
struct Target {
    base: String,
    children: Vec<Child>,
    /// The replicas' own addresses (for their `/metrics`).
    replicas: Vec<String>,
    proxy: CountingProxy,
    /// The API key every request carries (`None`: auth off, or the reference).
    token: Option<String>,
}

impl Target {
    fn pid(&self) -> u32 {
        self.children
            .first()
            .and_then(|c| c.id())
            .unwrap_or_default()
    }

    fn cpu_ticks(&self) -> u64 {
        self.children
            .iter()
            .filter_map(|c| c.id())
            .map(cpu_ticks)
            .sum()
    }

    /// Sum over the replicas of one unlabelled-or-labelled counter line of `/metrics`.
    async fn metric(&self, line_start: &str) -> f64 {
        let mut total = 0.0;
        for base in &self.replicas {
            let Ok(r) = authed(
                reqwest::Client::new().get(format!("{base}/metrics")),
                &self.token,
            )
            .send()
            .await
            else {
                continue;
            };
            let text = r.text().await.unwrap_or_default();
            total += text
                .lines()
                .find(|l| l.starts_with(line_start))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        total
    }
}

/// A layer-4 balancer on loopback: each new connection goes to the next replica in turn, as a
/// Kubernetes Service or a compose DNS round-robin would spread them.
async fn round_robin(upstreams: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let upstreams: Vec<String> = upstreams
        .iter()
        .map(|u| u.trim_start_matches("http://").to_string())
        .collect();
    tokio::spawn(async move {
        let mut next = 0usize;
        let uncounted = Arc::new(AtomicU64::new(0));
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstreams[next % upstreams.len()].clone();
            next += 1;
            let counter = uncounted.clone();
            tokio::spawn(async move { relay(client, &upstream, counter).await });
        }
    });
    url
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    n(11) + n(12)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn ticks_per_second() -> u64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; `getconf` confirms it if present.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

async fn wait_listening(child: &mut Child) -> u16 {
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("Listening on ") {
                return addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("server reported its port");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}

async fn wait_healthy(base: &str, path: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{base}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not come up");
}

fn key_hex(k: &PrivateKeySigner) -> String {
    format!("0x{}", hex::encode(k.to_bytes()))
}

fn our_bin() -> String {
    std::env::var("X402_BIN").unwrap_or_else(|_| format!("{ROOT}/target/release/x402-facilitator"))
}

fn authed(req: reqwest::RequestBuilder, token: &Option<String>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// What a public deployment switches on, for network `slug` on ledger `db` (nothing with
/// `--bare`): an API key is created with the CLI (as an operator does) and required on every
/// request; rate limits apply to everyone (no loopback exemption; the key's own rate is set far
/// above what wrk sends, so the limiter is consulted on every request but never refuses); fee
/// budgets on every counter, high enough never to run out, so each settle reserves on all five;
/// the discovery catalogue on. Returns the environment and the token.
async fn public_env(db: &Db, slug: &str) -> (Vec<(String, String)>, Option<String>) {
    if BARE.load(Ordering::Relaxed) {
        return (
            vec![("X402__RATE_LIMIT__EXEMPT".into(), "127.0.0.0/8".into())],
            None,
        );
    }
    let out = Command::new(our_bin())
        .args(["keys", "create", "--name", "bench", "--rate", "100000000"])
        .args([
            "--scopes",
            "verify,settle,supported,settlements,discovery,admin",
        ])
        .env("X402__DATABASE__URL", db.url())
        .stderr(Stdio::null())
        .output()
        .await
        .expect("the release binary creates a key");
    assert!(out.status.success(), "keys create failed");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let b = format!("X402__NETWORKS__{}__BUDGET__", slug.to_ascii_uppercase());
    let env = [
        ("X402__AUTH__REQUIRED".to_string(), "true".to_string()),
        (format!("{b}FEE_PER_SETTLE"), "0.000001".into()),
        (format!("{b}DAILY_CAP"), "1000000".into()),
        (format!("{b}PER_KEY_DAILY"), "1000000".into()),
        (format!("{b}PER_PAYER_DAILY"), "1000000".into()),
        (format!("{b}PER_PAY_TO_DAILY"), "1000000".into()),
        ("X402__DISCOVERY__ENABLED".into(), "true".into()),
    ];
    (env.into_iter().collect(), Some(token))
}

async fn start_ours(chain: &Chain, db: &Db, signers: &[PrivateKeySigner]) -> Target {
    start_replicas(chain, db, signers, 1, &[]).await
}

/// Ours serving `schemes` on the local network (one process).
async fn start_ours_serving(
    chain: &Chain,
    db: &Db,
    signers: &[PrivateKeySigner],
    schemes: &str,
) -> Target {
    start_replicas(
        chain,
        db,
        signers,
        1,
        &[("X402__NETWORKS__LOCAL__SCHEMES", schemes)],
    )
    .await
}

/// `n` identical processes (the same configuration and key list) on one ledger.
async fn start_replicas(
    chain: &Chain,
    db: &Db,
    signers: &[PrivateKeySigner],
    n: usize,
    extra_env: &[(&str, &str)],
) -> Target {
    let proxy = CountingProxy::start(&chain.url).await;
    let (public, token) = public_env(db, "local").await;
    let public: Vec<(&str, &str)> = public
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let env: Vec<(&str, &str)> = public.iter().chain(extra_env).copied().collect();
    let mut children = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..n {
        let (base, child) = start_process(chain, db, signers, &proxy.url, &env).await;
        children.push(child);
        replicas.push(base);
    }
    let base = if n == 1 {
        replicas[0].clone()
    } else {
        round_robin(replicas.clone()).await
    };
    Target {
        base,
        children,
        replicas,
        proxy,
        token,
    }
}

async fn start_process(
    chain: &Chain,
    db: &Db,
    signers: &[PrivateKeySigner],
    rpc_url: &str,
    extra_env: &[(&str, &str)],
) -> (String, Child) {
    let bin = our_bin();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let keys = signers.iter().map(key_hex).collect::<Vec<_>>().join(",");
    let child = Command::new(bin)
        .args(["serve", "--port", &port.to_string()])
        .env("X402__DATABASE__URL", db.url())
        .env(
            "X402__NETWORKS__LOCAL__NETWORK",
            format!("eip155:{}", chain.chain_id),
        )
        .env("X402__NETWORKS__LOCAL__RPC_URLS", rpc_url)
        .env("X402__NETWORKS__LOCAL__SIGNER_KEYS", keys)
        .env("X402__NETWORKS__LOCAL__RECEIPT_POLL_MS", "25")
        .envs(extra_env.iter().copied())
        .env("X402__SESSIONS__ENABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("release binary runs (bench/run builds it)");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, "/health").await;
    (base, child)
}

async fn start_reference(chain: &Chain, key: &PrivateKeySigner) -> Target {
    let proxy = CountingProxy::start(&chain.url).await;
    let mut child = Command::new("node")
        .arg(format!("{ROOT}/bench/ts-facilitator/server.mjs"))
        .env("RPC_URL", &proxy.url)
        .env("CHAIN_ID", chain.chain_id.to_string())
        .env("PRIVATE_KEY", key_hex(key))
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the reference facilitator (bench/run installs it)");
    let port = wait_listening(&mut child).await;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, "/supported").await;
    Target {
        base,
        children: vec![child],
        replicas: Vec::new(),
        proxy,
        token: None,
    }
}

#[derive(Default, Clone)]
struct Measure {
    rps: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    rpc_per_req: f64,
    answers: String,
}

/// Runs wrk against `target` and measures the target process around it.
async fn drive(
    target: &Target,
    path: &str,
    bodies: Option<&Path>,
    conns: u32,
    seconds: u64,
    max: usize,
) -> Measure {
    let threads = if conns >= 16 { 2 } else { 1 };
    let threads = if max > 0 { 1 } else { threads };
    let script = format!("{ROOT}/bench/wrk/post.lua");
    let body_arg = bodies
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let (ticks0, rpc0) = (target.cpu_ticks(), target.proxy.count());
    let mut wrk = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
        ])
        .args([
            "--timeout",
            "30s",
            "-s",
            &script,
            &format!("{}{path}", target.base),
            "--",
        ])
        .args([&body_arg, path, &max.to_string(), &threads.to_string()])
        .env(
            "X402_BENCH_TOKEN",
            target.token.as_deref().unwrap_or_default(),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("wrk runs (bench/run installs it)");
    // With a request budget, wrk's script says STOPPED when it is spent; wrk itself would idle
    // until -d, so it gets SIGINT, which makes it print its summary and exit.
    let wrk_pid = wrk.id().unwrap_or_default();
    let mut lines = BufReader::new(wrk.stdout.take().expect("piped")).lines();
    let mut text = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == "STOPPED" {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &wrk_pid.to_string()])
                .status();
        }
        text.push_str(&line);
        text.push('\n');
    }
    let _ = wrk.wait().await;
    let (ticks1, rpc1) = (target.cpu_ticks(), target.proxy.count());
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let responses = v["responses"].as_u64().unwrap_or(0);
    let secs = v["duration_us"].as_f64().unwrap_or(1.0) / 1e6;
    let n = responses.max(1) as f64;
    let mut answers = String::new();
    for (k, c) in v["statuses"].as_object().into_iter().flatten() {
        let _ = write!(answers, "HTTP {k}×{c} ");
    }
    for (k, c) in v["reasons"].as_object().into_iter().flatten() {
        let _ = write!(answers, "{k}×{c} ");
    }
    if v["socket_errors"].as_u64().unwrap_or(0) + v["timeouts"].as_u64().unwrap_or(0) > 0 {
        let _ = write!(
            answers,
            "socket-errors×{} timeouts×{}",
            v["socket_errors"], v["timeouts"]
        );
    }
    Measure {
        rps: responses as f64 / secs,
        p50_ms: v["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        p95_ms: v["p95_us"].as_f64().unwrap_or(0.0) / 1000.0,
        p99_ms: v["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        cpu_us_per_req: (ticks1 - ticks0) as f64 * 1e6 / ticks_per_second() as f64 / n,
        rpc_per_req: (rpc1 - rpc0) as f64 / n,
        answers: answers.trim().to_string(),
    }
}

/// Profiles ours with perf (cpu-clock) while `path` is driven at c=16 for `seconds` (at most
/// `max` requests when not 0), prints the report and returns the measure. The data is kept
/// under target/ so that it can be read again with other `perf report` options.
async fn profile(ours: &Target, path: &str, bodies: &Path, seconds: &str, max: usize) -> Measure {
    let out = PathBuf::from(format!("{ROOT}/target/ours.perf"));
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "-g",
            "-p",
            &ours.pid().to_string(),
            "-o",
        ])
        .arg(&out)
        .args(["--", "sleep", seconds])
        .spawn()
        .expect("perf runs");
    let secs: u64 = seconds.parse().unwrap_or(5);
    let m = drive(ours, path, Some(bodies), 16, secs, max).await;
    let _ = perf.wait().await;
    let report = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--stdio",
            "--percent-limit",
            "1.5",
            "-g",
            "none",
            "-i",
        ])
        .arg(&out)
        .output()
        .await
        .expect("perf report");
    println!("{}", String::from_utf8_lossy(&report.stdout));
    m
}

/// Distinct sign-in proofs for the sessions point.
const SESSION_PROOFS: usize = 4000;

/// `n` `/sessions/verify` bodies, each an EOA proof with its own nonce, signed now: EIP-4361 text
/// built by our own builder (the official client's proofs are checked by tests/it/sessions.rs).
fn session_proofs(chain_id: u64, n: usize) -> Vec<Value> {
    use alloy::signers::SignerSync;
    let keys: Vec<PrivateKeySigner> = (0..16).map(|_| PrivateKeySigner::random()).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // A minute back, so the whole point runs well inside the 5-minute age bound.
    let issued = iso8601(now - 60);
    let uri = "https://api.example.com/data";
    (0..n)
        .map(|i| {
            let key = &keys[i % keys.len()];
            let mut payload = serde_json::json!({
                "domain": "api.example.com", "address": key.address().to_checksum(None),
                "statement": "Sign in", "uri": uri, "version": "1",
                "chainId": format!("eip155:{chain_id}"), "type": "eip191",
                "nonce": format!("{:032x}", i as u128 + 1), "issuedAt": issued,
                "resources": [uri], "signature": "",
            });
            let proof: x402_facilitator::sessions::proof::Proof =
                serde_json::from_value(payload.clone()).expect("proof");
            let text = x402_facilitator::sessions::message::siwe(&proof, chain_id).expect("siwe");
            let sig = key.sign_message_sync(text.as_bytes()).expect("sign");
            payload["signature"] = serde_json::json!(format!("0x{}", hex::encode(sig.as_bytes())));
            serde_json::json!({
                "payload": payload, "domain": "api.example.com", "uri": uri,
                "chains": [format!("eip155:{chain_id}")],
            })
        })
        .collect()
}

/// `YYYY-MM-DDThh:mm:ss.000Z` of a unix time (civil-from-days, Howard Hinnant).
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn write_bodies(dir: &Path, name: &str, bodies: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = bodies.iter().map(|b| format!("{b}\n")).collect();
    std::fs::write(&path, text).expect("bodies written");
    path
}

/// `n` distinct payments from `payers` (distinct EIP-3009 nonces), each to a fresh payee.
fn payments(chain: &Chain, payers: &[PrivateKeySigner], n: usize) -> Vec<Payment> {
    (0..n)
        .map(|i| {
            let mut p = Payment::new(chain);
            p.payer = payers[i % payers.len()].clone();
            p.from = p.payer.address();
            // Valid for the whole run: the cost curve verifies these bodies minutes after they
            // were signed (the harness' default of 60 s had them all expired by then, and the
            // curve measured the refusal instead of a valid verify).
            p.valid_before = payment::now() + 3600;
            p
        })
        .collect()
}

async fn funded(chain: &Chain, n: usize) -> Vec<PrivateKeySigner> {
    let mut out = Vec::new();
    for _ in 0..n {
        let k = PrivateKeySigner::random();
        chain
            .mint(chain.token, k.address(), U256::from(10u64.pow(15)))
            .await;
        out.push(k);
    }
    out
}

async fn gas_keys(chain: &Chain, n: usize) -> Vec<PrivateKeySigner> {
    let mut out = Vec::new();
    for _ in 0..n {
        let k = PrivateKeySigner::random();
        chain.fund(k.address(), U256::from(10u128.pow(21))).await;
        out.push(k);
    }
    out
}

struct Row {
    label: String,
    ours: Measure,
    theirs: Option<Measure>,
}

fn print_rows(title: &str, rows: &[Row], ours_rss: (u64, u64), theirs_rss: Option<(u64, u64)>) {
    println!("\n## {title}\n");
    println!(
        "| point | facilitator | req/s | p50 ms | p95 ms | p99 ms | CPU µs/req | RPC calls/req | answers |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let line = |name: &str, m: &Measure| {
            println!(
                "| {} | {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {} |",
                r.label,
                m.rps,
                m.p50_ms,
                m.p95_ms,
                m.p99_ms,
                m.cpu_us_per_req,
                m.rpc_per_req,
                m.answers
            )
        };
        line("ours", &r.ours);
        if let Some(t) = &r.theirs {
            line("reference", t);
            println!(
                "| {} | **ours/ref** | **{:.1}×** | | | | **{:.1}× less** | | |",
                r.label,
                r.ours.rps / t.rps.max(0.001),
                t.cpu_us_per_req / r.ours.cpu_us_per_req.max(0.001)
            );
        }
    }
    // (0, 0): several processes or instances, no one figure to give.
    if ours_rss != (0, 0) {
        println!(
            "\nRSS ours: idle {:.1} MiB, peak {:.1} MiB",
            ours_rss.0 as f64 / 1024.0,
            ours_rss.1 as f64 / 1024.0
        );
    }
    if let Some((idle, peak)) = theirs_rss {
        println!(
            "RSS reference: idle {:.1} MiB, peak {:.1} MiB",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
}

async fn settle_point(
    chain: &Chain,
    target: &Target,
    payers: &[PrivateKeySigner],
    n: usize,
    conns: u32,
    dir: &Path,
) -> (Measure, usize) {
    let batch = payments(chain, payers, n);
    let bodies: Vec<Value> = batch.iter().map(Payment::body).collect();
    let file = write_bodies(
        dir,
        &format!("settle-{}-{}.jsonl", target.pid(), n),
        &bodies,
    );
    let m = drive(target, "/settle", Some(&file), conns, 300, n).await;
    let mut moved = 0;
    for p in &batch {
        if chain.balance(chain.token, p.pay_to).await == p.amount {
            moved += 1;
        }
    }
    (m, moved)
}

/// Ours settling `n` distinct `upto` payments (Permit2, through the upto proxy), each charging
/// 1 500 of a 2 500 maximum, at c=16. Every one is sent from the one key the payers named in
/// their witness (`upto` pins it: no round robin), so the point measures one nonce lane. There
/// is no reference point: the bench's TypeScript facilitator serves `exact` only.
async fn upto_point(o: &Options, dir: &Path) -> (Row, (u64, u64)) {
    let chain = Chain::start().await;
    let db = if o.db == "postgres" {
        Db::postgres().await
    } else {
        Db::sqlite()
    };
    let keys = gas_keys(&chain, 1).await;
    let facilitator = keys[0].address();
    let mut payers = Vec::new();
    for _ in 0..16 {
        let k = PrivateKeySigner::random();
        chain
            .mint(chain.permit_token, k.address(), U256::from(10u64.pow(15)))
            .await;
        chain.approve_permit2(&k, chain.permit_token).await;
        payers.push(k);
    }
    let charge = U256::from(1500u64);
    let batch: Vec<permit2::Permit2Payment> = (0..o.upto_settles)
        .map(|i| {
            let mut p = permit2::Permit2Payment::new(&chain, permit2::Kind::Upto, facilitator);
            p.payer = payers[i % payers.len()].clone();
            p.from = p.payer.address();
            // Signed before the run: valid long enough for the whole batch to go through one key.
            p.deadline = payment::now() + 600;
            p
        })
        .collect();
    let bodies: Vec<Value> = batch.iter().map(|p| p.settle_body(charge)).collect();
    let file = write_bodies(dir, "settle-upto.jsonl", &bodies);
    let ours = start_ours_serving(&chain, &db, &keys, "exact,upto").await;
    let idle = status_kb(ours.pid(), "VmRSS:");
    let m = drive(&ours, "/settle", Some(&file), 16, 300, bodies.len()).await;
    let mut moved = 0;
    for p in &batch {
        if chain.balance(chain.permit_token, p.pay_to).await == charge {
            moved += 1;
        }
    }
    let settled = db
        .count(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND scheme = 'upto' \
             AND amount = '1500' AND max_amount = '2500'",
        )
        .await;
    println!(
        "\nupto settle check: ours moved 1500 for {moved}/{} payments; ledger has {settled} settled upto rows",
        o.upto_settles
    );
    let row = Row {
        label: format!("upto settle {} distinct c=16 (one key)", o.upto_settles),
        ours: m,
        theirs: None,
    };
    (row, (idle, status_kb(ours.pid(), "VmHWM:")))
}

/// The cost curve, ours only: `/verify` throughput and latency from 1 to 1 024 connections on
/// the running instance, then `/settle` of `o.settles` distinct payments at c=16 through a fresh
/// instance holding 1, 4 and 16 signer keys (each key is its own nonce lane).
async fn scaling_points(
    o: &Options,
    chain: &Chain,
    ours: &Target,
    payers: &[PrivateKeySigner],
    valid_file: &Path,
    dir: &Path,
) {
    let mut rows = Vec::new();
    for conns in [1u32, 16, 64, 256, 1024] {
        rows.push(Row {
            label: format!("verify valid c={conns}"),
            ours: drive(ours, "/verify", Some(valid_file), conns, o.seconds, 0).await,
            theirs: None,
        });
        eprintln!("done: scaling verify c={conns}");
    }
    let mut notes = Vec::new();
    for keys in [1usize, 4, 16] {
        let db = if o.db == "postgres" {
            Db::postgres().await
        } else {
            Db::sqlite()
        };
        let signers = gas_keys(chain, keys).await;
        let target = start_ours(chain, &db, &signers).await;
        let (m, moved) = settle_point(chain, &target, payers, o.settles, 16, dir).await;
        notes.push(format!(
            "{keys} keys: moved money for {moved}/{}",
            o.settles
        ));
        rows.push(Row {
            label: format!("settle {} distinct c=16, {keys} keys", o.settles),
            ours: m,
            theirs: None,
        });
        eprintln!("done: scaling settle {keys} keys");
    }
    print_rows(&format!("cost curve, ledger {}", o.db), &rows, (0, 0), None);
    for n in notes {
        println!("\n{n}");
    }
}

/// Settles through 2 and 3 identical replicas sharing two signer keys on one Postgres: with 2,
/// each holds one key; with 3, one holds none and hands its settles to a key holder. Reports
/// the share of settles handed off (from the replicas' `/metrics`).
async fn replica_points(o: &Options, dir: &Path) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for n in [2usize, 3] {
        let chain = Chain::start().await;
        let db = Db::postgres().await;
        let payers = funded(&chain, 16).await;
        let keys = gas_keys(&chain, 2).await;
        let target = start_replicas(
            &chain,
            &db,
            &keys,
            n,
            &[("X402__SETTLEMENT__SIGNER_LEASE_TTL_MS", "3000")],
        )
        .await;
        balanced(&target, keys.len()).await;
        let (m, moved) = settle_point(&chain, &target, &payers, o.replica_settles, 16, dir).await;
        let out = target.metric("x402_handoff_total{outcome=\"out\"}").await;
        notes.push(format!(
            "{n} replicas: moved money for {moved}/{}, handed off {:.0} ({:.0} %)",
            o.replica_settles,
            out,
            100.0 * out / o.replica_settles.max(1) as f64
        ));
        rows.push(Row {
            label: format!(
                "settle {} distinct c=16, {n} replicas, 2 keys",
                o.replica_settles
            ),
            ours: m,
            theirs: None,
        });
    }
    print_rows("identical replicas on one Postgres", &rows, (0, 0), None);
    for n in notes {
        println!("\n{n}");
    }
}

/// Waits until the replicas hold every key between them in fair shares (none holds more than
/// ⌈K/N⌉, per their `/ready`): right after start-up the first replica holds every key and the
/// others get theirs only once it has drained its excess, and a run started before that would
/// measure hand-offs the steady state does not have.
async fn balanced(target: &Target, keys: usize) {
    let share = keys.div_ceil(target.replicas.len().max(1));
    let started = Instant::now();
    loop {
        let mut held = Vec::new();
        for base in &target.replicas {
            let mut n = 0;
            if let Ok(r) = authed(
                reqwest::Client::new().get(format!("{base}/ready")),
                &target.token,
            )
            .send()
            .await
                && let Ok(v) = r.json::<Value>().await
            {
                n = v["signers"]
                    .as_object()
                    .map(|s| s.values().filter(|v| v["draining"] == false).count())
                    .unwrap_or(0);
            }
            held.push(n);
        }
        let fair = held.iter().sum::<usize>() == keys && held.iter().all(|n| *n <= share);
        if fair {
            eprintln!(
                "replicas hold {held:?} of {keys} keys after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if started.elapsed() > Duration::from_secs(120) {
            eprintln!("replicas still hold {held:?} of {keys} keys after 120 s; measuring anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ours on the local Solana chain (LiteSVM behind JSON-RPC): `/verify` and `/settle` of
/// distinct SPL payments. The chain is one Node process executing transactions in turn, so the
/// settle figures are bounded by it; there is no reference facilitator for this point.
async fn solana_point(o: &Options, dir: &Path) {
    use solana::{
        DEVNET, SolanaChain, TestKey, compute_limit, compute_price, memo, message, requirements,
        signed_base64, transfer,
    };
    let chain = SolanaChain::start().await;
    let fee_payer = TestKey::random();
    chain.airdrop(&fee_payer.pubkey(), 1_000_000_000_000).await;
    let mint = chain.create_mint(false).await;
    let payers: Vec<TestKey> = (0..8).map(|_| TestKey::random()).collect();
    for p in &payers {
        chain.mint_to(&mint, &p.pubkey(), 1_000_000_000).await;
    }
    let pay_to = TestKey::random().pubkey();
    chain.create_ata(&mint, &pay_to).await;
    let db = if o.db == "postgres" {
        Db::postgres().await
    } else {
        Db::sqlite()
    };
    let proxy = CountingProxy::start(&chain.url).await;
    let (public, token) = public_env(&db, "sol").await;
    let bin = our_bin();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let child = Command::new(bin)
        .args(["serve", "--port", &port.to_string()])
        .env("X402__DATABASE__URL", db.url())
        .env("X402__NETWORKS__SOL__NETWORK", DEVNET)
        .env("X402__NETWORKS__SOL__POLICY__ASSETS", "any")
        .env("X402__NETWORKS__SOL__RPC_URLS", &proxy.url)
        .env(
            "X402__NETWORKS__SOL__SIGNER_KEYS",
            fee_payer.secret_base58(),
        )
        .env("X402__NETWORKS__SOL__CONFIRM_POLL_MS", "100")
        .envs(public)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("release binary runs");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, "/health").await;
    let ours = Target {
        base: base.clone(),
        children: vec![child],
        replicas: vec![base],
        proxy,
        token,
    };
    let reqs = requirements(&mint, &pay_to, 1_000, &fee_payer.pubkey());
    let mut bodies = Vec::new();
    let blockhash = chain.blockhash().await;
    for i in 0..(2 * o.settles.max(1)) {
        let payer = &payers[i % payers.len()];
        let ixs = [
            compute_limit(20_000),
            compute_price(1),
            transfer(false, mint, payer.pubkey(), pay_to, 1_000),
            memo(&format!("{i:032x}"), &[]),
        ];
        let msg = message(fee_payer.pubkey(), blockhash, &ixs, None);
        bodies.push(solana::body(
            2,
            &signed_base64(msg, &[&payer.keypair]),
            reqs.clone(),
        ));
    }
    let (verify_bodies, settle_bodies) = bodies.split_at(o.settles.max(1));
    let verify_file = write_bodies(dir, "svm-verify.jsonl", verify_bodies);
    let settle_file = write_bodies(dir, "svm-settle.jsonl", settle_bodies);
    let idle = status_kb(ours.pid(), "VmRSS:");
    let v = drive(&ours, "/verify", Some(&verify_file), 16, o.seconds, 0).await;
    let s = drive(
        &ours,
        "/settle",
        Some(&settle_file),
        16,
        120,
        settle_bodies.len(),
    )
    .await;
    let settled = db
        .count("SELECT count(*) FROM settlements WHERE state = 'settled'")
        .await;
    let paid = chain.token_balance(&mint, &pay_to, false).await;
    let rows = [
        Row {
            label: "solana verify valid c=16".into(),
            ours: v,
            theirs: None,
        },
        Row {
            label: format!("solana settle {} distinct c=16", settle_bodies.len()),
            ours: s,
            theirs: None,
        },
    ];
    print_rows(
        &format!("local Solana chain (LiteSVM), ledger {}", o.db),
        &rows,
        (idle, status_kb(ours.pid(), "VmHWM:")),
        None,
    );
    println!(
        "\nsolana settle check: {settled} settled rows; payee received {} of {} expected atomic units",
        paid,
        settle_bodies.len() as u64 * 1_000
    );
}

async fn run(o: Options) {
    let dir = tempfile::tempdir().expect("tempdir");
    if o.only_replicas {
        replica_points(&o, dir.path()).await;
        return;
    }
    if o.solana || o.only_solana {
        solana_point(&o, dir.path()).await;
    }
    if o.only_solana {
        return;
    }
    let chain = Chain::start().await;
    let db = if o.db == "postgres" {
        Db::postgres().await
    } else {
        Db::sqlite()
    };
    let payers = funded(&chain, 16).await;
    let ours_keys = gas_keys(&chain, 4).await;
    let ours = start_ours(&chain, &db, &ours_keys).await;
    let ours_idle = status_kb(ours.pid(), "VmRSS:");
    let theirs = if o.reference {
        let key = gas_keys(&chain, 1).await;
        Some(start_reference(&chain, &key[0]).await)
    } else {
        None
    };
    let theirs_idle = theirs.as_ref().map(|t| status_kb(t.pid(), "VmRSS:"));

    let valid: Vec<Value> = payments(&chain, &payers, 4000)
        .iter()
        .map(Payment::body)
        .collect();
    let valid_file = write_bodies(dir.path(), "verify-valid.jsonl", &valid);
    let mut bad = Payment::new(&chain);
    bad.payer = PrivateKeySigner::random(); // signs, but is not `from`
    bad.from = payers[0].address();
    let bad_file = write_bodies(dir.path(), "verify-bad.jsonl", &[bad.body()]);

    if o.only_sessions {
        // Enough distinct proofs for a profile's seconds too (each nonce is single-use).
        let n = SESSION_PROOFS * 5;
        let file = write_bodies(
            dir.path(),
            "sessions-eoa.jsonl",
            &session_proofs(chain.chain_id, n),
        );
        let m = match std::env::var("X402_BENCH_PROFILE") {
            Ok(seconds) => profile(&ours, "/sessions/verify", &file, &seconds, n).await,
            Err(_) => {
                drive(
                    &ours,
                    "/sessions/verify",
                    Some(&file),
                    16,
                    60,
                    SESSION_PROOFS,
                )
                .await
            }
        };
        println!(
            "sessions/verify EOA c=16 ({}): {:.0} req/s, p99 {:.2} ms, {:.0} µs CPU/req, answers {}",
            o.db, m.rps, m.p99_ms, m.cpu_us_per_req, m.answers
        );
        // The same work but the nonce claim: a proof whose signature recovers to another
        // address is refused after the recovery, before the ledger.
        let mut bad = session_proofs(chain.chain_id, 2);
        bad[0]["payload"]["signature"] = bad[1]["payload"]["signature"].clone();
        let bad_file = write_bodies(dir.path(), "sessions-bad.jsonl", &bad[..1]);
        let m = drive(&ours, "/sessions/verify", Some(&bad_file), 16, o.seconds, 0).await;
        println!(
            "sessions/verify EOA bad signature c=16 ({}): {:.0} req/s, p99 {:.2} ms, {:.0} µs CPU/req, answers {}",
            o.db, m.rps, m.p99_ms, m.cpu_us_per_req, m.answers
        );
        return;
    }
    if let Ok(seconds) = std::env::var("X402_BENCH_PROFILE") {
        // Profile ours under `verify valid c=16`, then stop.
        let m = profile(&ours, "/verify", &valid_file, &seconds, 0).await;
        println!(
            "verify valid c=16: {:.0} req/s, {:.0} µs CPU/req",
            m.rps, m.cpu_us_per_req
        );
        return;
    }
    let proofs_file = write_bodies(
        dir.path(),
        "sessions-eoa.jsonl",
        &session_proofs(chain.chain_id, SESSION_PROOFS),
    );
    let mut rows = Vec::new();
    // Each proof's nonce is single-use: a budget of one request per proof.
    rows.push(Row {
        label: format!("sessions/verify EOA {SESSION_PROOFS} distinct c=16"),
        ours: drive(
            &ours,
            "/sessions/verify",
            Some(&proofs_file),
            16,
            60,
            SESSION_PROOFS,
        )
        .await,
        theirs: None,
    });
    eprintln!("done: sessions/verify");
    for (label, path, file, conns) in [
        ("verify valid c=1", "/verify", Some(valid_file.as_path()), 1),
        (
            "verify valid c=16",
            "/verify",
            Some(valid_file.as_path()),
            16,
        ),
        (
            "verify valid c=64",
            "/verify",
            Some(valid_file.as_path()),
            64,
        ),
        (
            "verify bad signature c=64",
            "/verify",
            Some(bad_file.as_path()),
            64,
        ),
        ("supported c=64", "/supported", None, 64),
    ] {
        let ours_m = drive(&ours, path, file, conns, o.seconds, 0).await;
        let theirs_m = match &theirs {
            Some(t) => Some(drive(t, path, file, conns, o.seconds, 0).await),
            None => None,
        };
        eprintln!("done: {label}");
        rows.push(Row {
            label: label.into(),
            ours: ours_m,
            theirs: theirs_m,
        });
    }
    let (ours_settle, ours_moved) =
        settle_point(&chain, &ours, &payers, o.settles, 16, dir.path()).await;
    let theirs_settle = match &theirs {
        Some(t) => Some(settle_point(&chain, t, &payers, o.settles, 16, dir.path()).await),
        None => None,
    };
    let settled_rows = db
        .count("SELECT count(*) FROM settlements WHERE state = 'settled'")
        .await;
    rows.push(Row {
        label: format!("settle {} distinct c=16", o.settles),
        ours: ours_settle,
        theirs: theirs_settle.as_ref().map(|(m, _)| m.clone()),
    });
    let ours_peak = status_kb(ours.pid(), "VmHWM:");
    let theirs_peak = theirs.as_ref().map(|t| status_kb(t.pid(), "VmHWM:"));
    print_rows(
        &format!("automine anvil, ledger {}", o.db),
        &rows,
        (ours_idle, ours_peak),
        theirs_idle.zip(theirs_peak),
    );
    println!(
        "\nsettle check: ours moved money for {ours_moved}/{} payments, ledger has {settled_rows} settled rows; reference moved {}/{}",
        o.settles,
        theirs_settle.as_ref().map(|(_, m)| *m).unwrap_or(0),
        o.settles
    );
    if o.scaling {
        scaling_points(&o, &chain, &ours, &payers, &valid_file, dir.path()).await;
    }
    drop(ours);
    drop(theirs);

    if o.upto_settles > 0 {
        let (row, rss) = upto_point(&o, dir.path()).await;
        print_rows(
            &format!("upto on automine anvil, ledger {}", o.db),
            &[row],
            rss,
            None,
        );
    }

    // Identical replicas (the same configuration and keys) behind a round-robin balancer, on
    // one Postgres: the fair shares and the hand-off of settles to a key holder.
    if o.db == "postgres" && o.replica_settles > 0 {
        replica_points(&o, dir.path()).await;
    }

    // A chain that mines a block per second: settles are bounded by inclusion only.
    if o.slow_settles > 0 {
        let slow = Chain::start_with(31337, &["--block-time", "1"]).await;
        let slow_db = if o.db == "postgres" {
            Db::postgres().await
        } else {
            Db::sqlite()
        };
        let payers = funded(&slow, 8).await;
        let keys = gas_keys(&slow, 4).await;
        let ours = start_ours(&slow, &slow_db, &keys).await;
        let (m, moved) = settle_point(&slow, &ours, &payers, o.slow_settles, 16, dir.path()).await;
        let reference = if o.reference {
            let key = gas_keys(&slow, 1).await;
            let t = start_reference(&slow, &key[0]).await;
            Some(settle_point(&slow, &t, &payers, o.slow_settles, 16, dir.path()).await)
        } else {
            None
        };
        let row = Row {
            label: format!("settle {} distinct c=16, 1 s blocks", o.slow_settles),
            ours: m,
            theirs: reference.as_ref().map(|(m, _)| m.clone()),
        };
        print_rows(
            "anvil mining one block per second",
            &[row],
            (0, status_kb(ours.pid(), "VmHWM:")),
            None,
        );
        println!(
            "\nslow-chain check: ours moved money for {moved}/{}; reference {}/{}",
            o.slow_settles,
            reference.map(|(_, m)| m).unwrap_or(0),
            o.slow_settles
        );
    }
}

fn main() {
    let o = options();
    BARE.store(o.bare, Ordering::Relaxed);
    println!(
        "ours runs {}",
        if o.bare {
            "bare (--bare): no API keys, loopback exempt from rate limits, no budgets, no discovery"
        } else {
            "as in public: API key required, rate limits on for everyone, fee budgets on every counter, discovery and sessions on"
        }
    );
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
    eprintln!(
        "benchmark finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

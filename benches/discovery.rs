//! Discovery benchmark: `GET /discovery/search` and `GET /discovery/resources` of the release
//! build over a catalog of 10 000 paid resources (plus extra payments for popularity), driven
//! by wrk on loopback with `bench/wrk/post.lua`. Run it through `bench/run` (which provisions
//! wrk and Postgres and builds the binary) or `cargo bench --bench discovery -- --db sqlite`.
//!
//! The catalog is filled through the ledger's own `upsert_listing`, the statement the
//! cataloguing worker runs, with synthetic but realistic resources: a service name, a
//! description and tags drawn from a fixed vocabulary, one accept each.

#[path = "../tests/it/harness/db.rs"]
#[allow(dead_code)]
mod db;

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use db::Db;
use serde_json::Value;
use tokio::process::{Child, Command};
use x402_facilitator::ledger::catalog::amount_key;
use x402_facilitator::ledger::{self, ListingAccept, ListingPayment, NewListing};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Options {
    db: String,
    resources: usize,
    seconds: u64,
}

fn options() -> Options {
    let mut o = Options {
        db: "sqlite".into(),
        resources: 10_000,
        seconds: 5,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => o.db = it.next().cloned().unwrap_or_default(),
            "--resources" => o.resources = it.next().and_then(|v| v.parse().ok()).unwrap_or(10_000),
            "--seconds" => o.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            "--bench" => {}
            "--help" | "-h" => {
                println!("discovery [--db sqlite|postgres] [--resources N] [--seconds N]");
                std::process::exit(0);
            }
            // bench/run passes the load benchmark's options to every bench target.
            other => eprintln!("ignoring argument {other}"),
        }
    }
    o
}

const WORDS: &[&str] = &[
    "weather",
    "forecast",
    "maps",
    "geocoding",
    "routing",
    "traffic",
    "translation",
    "speech",
    "vision",
    "ocr",
    "search",
    "news",
    "finance",
    "stocks",
    "crypto",
    "prices",
    "sports",
    "scores",
    "music",
    "lyrics",
    "movies",
    "reviews",
    "recipes",
    "nutrition",
    "fitness",
    "health",
    "medical",
    "legal",
    "contracts",
    "invoices",
    "email",
    "sms",
    "phone",
    "identity",
    "fraud",
    "risk",
    "credit",
    "payments",
    "shipping",
    "tracking",
    "flights",
    "hotels",
    "travel",
    "events",
    "tickets",
    "jobs",
    "resumes",
    "real",
    "estate",
    "mortgage",
    "energy",
    "solar",
    "climate",
    "air",
    "quality",
    "water",
    "agriculture",
    "satellite",
    "imagery",
    "drones",
    "robotics",
    "embeddings",
    "summaries",
    "classification",
    "sentiment",
    "moderation",
    "images",
    "video",
    "audio",
    "podcasts",
    "books",
    "papers",
    "patents",
    "chemistry",
    "genomics",
    "proteins",
    "education",
    "quizzes",
    "games",
    "chess",
    "poker",
    "lottery",
    "astronomy",
    "space",
    "launches",
    "earthquakes",
    "volcanoes",
    "tides",
    "surf",
    "snow",
    "pollen",
    "allergy",
    "calendar",
    "holidays",
    "timezones",
    "currency",
    "exchange",
    "rates",
];

/// xorshift64*: deterministic, so every run catalogues the same resources.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len())]
    }
}

fn capitalised(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn listing(i: usize, rng: &mut Rng, now: i64) -> NewListing {
    let (a, b) = (rng.word(), rng.word());
    let description = (0..8 + rng.below(8))
        .map(|_| rng.word())
        .collect::<Vec<_>>()
        .join(" ");
    let network = ["eip155:8453", "eip155:84532", "eip155:137"][i % 3];
    let asset = format!("0x{:040x}", i % 7);
    let pay_to = format!("0x{:040x}", 1000 + i % 997);
    let amount = (1 + rng.below(100_000)).to_string();
    NewListing {
        resource: format!("https://api{}.example.com/v1/{a}/{i}", i % 500),
        kind: if i.is_multiple_of(10) { "mcp" } else { "http" }.into(),
        method: if i.is_multiple_of(10) { "" } else { "GET" }.into(),
        tool_name: if i.is_multiple_of(10) {
            format!("{a}_{b}")
        } else {
            String::new()
        },
        x402_version: 2,
        description: Some(format!("{} {description}", capitalised(a))),
        mime_type: Some("application/json".into()),
        service_name: Some(format!("{} {}", capitalised(a), capitalised(b))),
        tags: (0..3).map(|_| rng.word().to_string()).collect(),
        icon_url: Some(format!("https://cdn{}.example.com/icon.png", i % 50)),
        bazaar: format!(
            r#"{{"info":{{"input":{{"type":"http","method":"GET","queryParams":{{"q":"{a}"}}}},"output":{{"type":"json","example":{{"{b}":1}}}}}},"schema":{{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{{"input":{{"type":"object"}},"output":{{"type":"object"}}}},"required":["input"]}},"routeTemplate":"/v1/{a}/:id"}}"#
        ),
        accept: ListingAccept {
            scheme: "exact".into(),
            network: network.into(),
            pay_to: pay_to.clone(),
            asset: asset.clone(),
            amount_key: amount_key(&amount).unwrap_or_default(),
            requirement: format!(
                r#"{{"scheme":"exact","network":"{network}","amount":"{amount}","asset":"{asset}","payTo":"{pay_to}","maxTimeoutSeconds":60,"extra":{{"name":"USD Coin","version":"2"}}}}"#
            ),
        },
        payment: Some(ListingPayment {
            network: network.into(),
            tx_id: format!("0x{:064x}", i),
            payer: format!("0x{:040x}", rng.below(5000)),
        }),
        seen_at: now - rng.below(20 * 24 * 3600 * 1000) as i64,
    }
}

/// Catalogues `n` resources, a fifth of them paid again one to ten times (popularity).
async fn populate(db: &Db, n: usize) -> (usize, Duration) {
    let started = Instant::now();
    let l = ledger::connect(&db.url(), 4, Duration::from_secs(10))
        .await
        .expect("ledger");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bound = i64::try_from(n * 2).unwrap_or(i64::MAX);
    let mut upserts = 0;
    let mut tx = n;
    for i in 0..n {
        let mut s = listing(i, &mut rng, now);
        l.upsert_listing(&s, bound).await.expect("upsert");
        upserts += 1;
        if i.is_multiple_of(5) {
            for _ in 0..1 + rng.below(10) {
                tx += 1;
                if let Some(p) = s.payment.as_mut() {
                    p.tx_id = format!("0x{tx:064x}");
                    p.payer = format!("0x{:040x}", rng.below(5000));
                }
                l.upsert_listing(&s, bound).await.expect("upsert");
                upserts += 1;
            }
        }
    }
    (upserts, started.elapsed())
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{base}/health"))
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

async fn start_ours(db: &Db) -> (Child, String) {
    let bin = std::env::var("X402_BIN")
        .unwrap_or_else(|_| format!("{ROOT}/target/release/x402-facilitator"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let child = Command::new(bin)
        .args(["serve", "--port", &port.to_string()])
        .env("X402__DATABASE__URL", db.url())
        .env("X402__DISCOVERY__ENABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("release binary runs (bench/run builds it)");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    (child, base)
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    n(11) + n(12)
}

struct Measure {
    rps: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    answers: String,
}

async fn drive(base: &str, pid: u32, path: &str, conns: u32, seconds: u64) -> Measure {
    let threads = if conns >= 16 { 2 } else { 1 };
    let script = format!("{ROOT}/bench/wrk/post.lua");
    let ticks0 = cpu_ticks(pid);
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &conns.to_string()])
        .args([
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "--timeout",
            "30s",
            "-s",
            &script,
        ])
        .arg(format!("{base}{path}"))
        .args(["--", "-", path, "0", &threads.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("wrk runs (bench/run installs it)");
    let ticks1 = cpu_ticks(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let responses = v["responses"].as_u64().unwrap_or(0);
    let secs = v["duration_us"].as_f64().unwrap_or(1.0) / 1e6;
    let mut answers = String::new();
    for (k, c) in v["statuses"].as_object().into_iter().flatten() {
        let _ = write!(answers, "HTTP {k}×{c} ");
    }
    if v["socket_errors"].as_u64().unwrap_or(0) + v["timeouts"].as_u64().unwrap_or(0) > 0 {
        let _ = write!(
            answers,
            "socket-errors×{} timeouts×{}",
            v["socket_errors"], v["timeouts"]
        );
    }
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    let cpu_us = (ticks1.saturating_sub(ticks0)) as f64 * 1e6 / 100.0;
    Measure {
        rps: responses as f64 / secs,
        p50_ms: v["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        p95_ms: v["p95_us"].as_f64().unwrap_or(0.0) / 1000.0,
        p99_ms: v["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        cpu_us_per_req: cpu_us / responses.max(1) as f64,
        answers: answers.trim().to_string(),
    }
}

/// What one request of a point answers (how many results, the page size), as a sanity check.
async fn sample(base: &str, path: &str) -> String {
    let v: Value = match reqwest::get(format!("{base}{path}")).await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => return format!("error: {e}"),
    };
    let items = v["items"]
        .as_array()
        .or(v["resources"].as_array())
        .map_or(0, Vec::len);
    let total = v["pagination"]["total"]
        .as_i64()
        .map(|t| format!(" of {t}"))
        .unwrap_or_default();
    let bytes = v.to_string().len();
    format!("{items}{total} items, {bytes} B")
}

async fn run(o: Options) {
    let db = if o.db == "postgres" {
        Db::postgres().await
    } else {
        Db::sqlite()
    };
    let (upserts, took) = populate(&db, o.resources).await;
    eprintln!(
        "catalogued {} resources in {upserts} upserts, {:.1} s ({:.2} ms per upsert)",
        o.resources,
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / upserts as f64
    );
    let (child, base) = start_ours(&db).await;
    let pid = child.id().unwrap_or_default();
    let points: &[(&str, &str, u32)] = &[
        (
            "search one common word c=1",
            "/discovery/search?query=weather",
            1,
        ),
        (
            "search one common word c=16",
            "/discovery/search?query=weather",
            16,
        ),
        (
            "search two words c=16",
            "/discovery/search?query=weather+forecast",
            16,
        ),
        (
            "search common word, sort=popularity c=16",
            "/discovery/search?query=weather&sort=popularity",
            16,
        ),
        (
            "search no match c=16",
            "/discovery/search?query=zzzzunknown",
            16,
        ),
        ("list first page c=16", "/discovery/resources", 16),
        (
            "list network + sort=popularity c=16",
            "/discovery/resources?network=eip155%3A8453&sort=popularity",
            16,
        ),
        (
            "list asset + maxPrice c=16",
            "/discovery/resources?asset=0x0000000000000000000000000000000000000003&maxPrice=50000",
            16,
        ),
        (
            "list offset 9980 c=16",
            "/discovery/resources?offset=9980",
            16,
        ),
    ];
    println!(
        "\n### discovery, {} catalogued resources, ledger {}\n\n| point | req/s | p50 ms | p95 ms | p99 ms | CPU µs/req | one answer | answers |\n|---|---:|---:|---:|---:|---:|---|---|",
        o.resources, o.db
    );
    for (label, path, conns) in points {
        let one = sample(&base, path).await;
        let m = drive(&base, pid, path, *conns, o.seconds).await;
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {one} | {} |",
            m.rps, m.p50_ms, m.p95_ms, m.p99_ms, m.cpu_us_per_req, m.answers
        );
    }
    drop(child);
}

fn main() {
    let o = options();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
    eprintln!(
        "discovery benchmark finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

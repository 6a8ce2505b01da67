//! What the access gate costs a request in CPU (issue #12 target: under 10 µs): the cached key
//! lookup (SHA-256 of the token, one map read) plus the per-IP and per-key GCRA checks, on the
//! real types the middleware uses, single-threaded and multi-threaded. The ledger is a real
//! SQLite file; after the first lookup every request is served from the cache, as in production
//! between two `auth.cache_ms` refreshes (a refresh is one indexed read, measured separately).
//!
//! Run by bench/run, or: cargo bench --bench access

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use x402_facilitator::access::keys::TokenHash;
use x402_facilitator::access::settings::RateLimitSettings;
use x402_facilitator::access::{self, Class, KeyCache, KeySpec, Limits, Scope};

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let ledger = x402_facilitator::ledger::connect(&url, 4, Duration::from_secs(3))
        .await
        .expect("ledger");
    let issued = access::create_key(
        &ledger,
        &KeySpec {
            name: "bench".into(),
            scopes: vec![Scope::Verify],
            pay_to: None,
            rate_per_second: Some(1_000_000_000),
        },
        None,
    )
    .await
    .expect("key");
    // Cache for the whole run: what is measured is the per-request path.
    let keys = Arc::new(KeyCache::new(ledger.clone(), Duration::from_secs(3600)));
    let mut settings = RateLimitSettings::default();
    settings.exempt.clear();
    settings.per_ip.verify = 1_000_000_000;
    let limits = Arc::new(Limits::new(&settings).expect("limits"));
    let n = 200_000u32;
    let gate = move |keys: Arc<KeyCache>, limits: Arc<Limits>, token: String, base: u32| async move {
        let started = Instant::now();
        for i in 0..n {
            // A spread of client addresses, as on a public port.
            let ip = IpAddr::from([198, 51, ((base + i) >> 8) as u8, (base + i) as u8]);
            limits.check_ip(Class::Verify, ip).expect("under the limit");
            // What the gate does per request: hash the presented token once, then look it up.
            let hash = TokenHash::of(&token);
            let key = keys.lookup(&hash).await.expect("ledger").expect("live");
            limits
                .check_key(Class::Verify, &key.id, key.rate_per_second)
                .expect("under the limit");
        }
        started.elapsed()
    };
    keys.lookup(&TokenHash::of(&issued.token))
        .await
        .expect("warm");
    let cpu_before = cpu_time();
    let took = gate(keys.clone(), limits.clone(), issued.token.clone(), 0).await;
    let cpu = cpu_time().saturating_sub(cpu_before);
    println!(
        "access gate, 1 thread: {:.2} µs wall, {:.2} µs CPU per request ({n} requests)",
        took.as_secs_f64() * 1e6 / f64::from(n),
        cpu.as_secs_f64() * 1e6 / f64::from(n),
    );
    let threads = 2u32;
    let cpu_before = cpu_time();
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            tokio::spawn(gate(
                keys.clone(),
                limits.clone(),
                issued.token.clone(),
                t * n,
            ))
        })
        .collect();
    for h in handles {
        h.await.expect("joined");
    }
    let wall = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    println!(
        "access gate, {threads} tasks: {:.2} µs CPU per request, {:.0} requests/s",
        cpu.as_secs_f64() * 1e6 / f64::from(n * threads),
        f64::from(n * threads) / wall.as_secs_f64()
    );
    let started = Instant::now();
    let misses = 2_000u32;
    for i in 0..misses {
        let _ = ledger
            .key_by_hash(&format!("{i:064x}"))
            .await
            .expect("ledger");
    }
    println!(
        "cache refresh (one indexed ledger read): {:.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(misses)
    );
}

/// This process's CPU time (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

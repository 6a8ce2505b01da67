//! What a `/verify`'s replay lookup costs in CPU: `Ledger::find` of a payment the ledger has
//! never seen (the case of every new valid payment), one task at a time and 16 at once, on a
//! real SQLite file and, when `TEST_DATABASE_URL` is set, a real Postgres. CPU is this whole
//! process (the tokio workers and sqlx's SQLite worker threads).
//!
//! Run by bench/run, or: cargo bench --bench ledger

use std::time::{Duration, Instant};

use x402_facilitator::ledger::SharedLedger;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledgers = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path().join("bench.db").display()),
    )];
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        ledgers.push(("postgres", url));
    }
    for (name, url) in ledgers {
        let ledger = x402_facilitator::ledger::connect(&url, 16, Duration::from_secs(5))
            .await
            .expect("ledger");
        for tasks in [1u32, 16] {
            let n = 20_000 / tasks;
            let (wall, cpu) = lookups(&ledger, tasks, n).await;
            let total = f64::from(n * tasks);
            println!(
                "{name}: find of an unknown payment, {tasks} tasks: {:.1} µs CPU per lookup, {:.0} lookups/s",
                cpu.as_secs_f64() * 1e6 / total,
                total / wall.as_secs_f64()
            );
        }
    }
}

async fn lookups(ledger: &SharedLedger, tasks: u32, n: u32) -> (Duration, Duration) {
    let cpu_before = cpu_time();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    let key = format!("bench:{t}:{i}:{:x}", started.elapsed().as_nanos());
                    let found = ledger.find(&key).await.expect("ledger");
                    assert!(found.is_none());
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("joined");
    }
    (started.elapsed(), cpu_time().saturating_sub(cpu_before))
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
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

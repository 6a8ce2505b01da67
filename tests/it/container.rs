//! The container files kept honest without a Docker engine: the Dockerfile's build steps are
//! exactly `scripts/build-release --deps-only` then `scripts/build-release` (the steps operators
//! and this suite run), its HEALTHCHECK asks `/health`; and two replicas of the real binary run on
//! one Postgres with exactly the environment docker-compose.yml gives its facilitators (plus the
//! Dockerfile's ENV), settle, and serve the console.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::harness::app::{env_for, signers};
use crate::harness::process::Proc;
use crate::harness::{self, Chain, Db};

fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("read {file}: {e}"))
}

/// Dockerfile instructions with their continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part.trim_end()),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
    }
    out
}

#[test]
fn dockerfile_builds_with_the_release_script_in_a_dependency_stage_and_checks_health() {
    let steps = instructions(&read("Dockerfile"));
    let ours: Vec<&str> = steps
        .iter()
        .filter_map(|s| s.strip_prefix("RUN "))
        .filter(|r| r.contains("scripts/"))
        .collect();
    assert_eq!(
        ours,
        ["scripts/build-release --deps-only", "scripts/build-release"]
    );
    // The dependency stage sees nothing but the manifest, the lockfile and the script, so its
    // layer survives every source change.
    let deps: Vec<&String> = steps
        .iter()
        .skip_while(|s| !s.ends_with("AS deps"))
        .take_while(|s| !s.starts_with("RUN "))
        .filter(|s| s.starts_with("COPY "))
        .collect();
    assert_eq!(
        deps,
        [
            "COPY Cargo.toml Cargo.lock ./",
            "COPY scripts/build-release scripts/build-release"
        ]
    );
    let stages: Vec<&String> = steps.iter().filter(|s| s.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 3, "{stages:?}");
    assert!(stages[1].starts_with("FROM deps AS build"), "{stages:?}");
    let health = steps
        .iter()
        .find(|s| s.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(health.contains("/health"), "{health}");
    assert!(read(".dockerignore").lines().any(|l| l == "target"));
}

/// `${VAR:-default}` and `${VAR}` filled from `vars`, else the default, else empty.
fn substitute(value: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .expect("closed ${");
        let inner = &rest[start + 2..end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(vars.get(name).copied().unwrap_or(default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The `environment:` of the compose file's shared `x-facilitator` block.
fn compose_env(vars: &BTreeMap<&str, &str>) -> Vec<(String, String)> {
    let compose = read("docker-compose.yml");
    let block = compose
        .split("x-facilitator: &facilitator")
        .nth(1)
        .expect("an x-facilitator block");
    let env = block.split("  environment:\n").nth(1).expect("environment");
    env.lines()
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_string(), substitute(v.trim_matches('"'), vars)))
        .collect()
}

/// The Dockerfile's `ENV` pairs.
fn dockerfile_env() -> Vec<(String, String)> {
    instructions(&read("Dockerfile"))
        .iter()
        .filter_map(|s| s.strip_prefix("ENV "))
        .flat_map(|pairs| {
            pairs
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn two_replicas_on_one_postgres_with_the_compose_environment() {
    let chain = Chain::start().await;
    let db = Db::postgres().await;
    let keys = signers(&chain, 2, false).await;
    let vars = BTreeMap::from([
        ("X402_CONSOLE_ENABLED", "true"),
        ("X402_CONSOLE_TOKEN", "compose-test-token"),
    ]);
    let compose = compose_env(&vars);
    let url = compose
        .iter()
        .find(|(k, _)| k == "X402__DATABASE__URL")
        .map(|(_, v)| v.clone())
        .expect("the compose file sets the ledger URL");
    assert!(
        url.starts_with("postgres://") && url.contains("@postgres:5432/"),
        "{url}"
    );
    // The test's chain on top of the operator's environment; the ledger is the test's Postgres
    // in place of the compose service's host name.
    let mut env = env_for(&chain, &chain.url, &db, &keys);
    env.extend(dockerfile_env());
    env.extend(
        compose
            .into_iter()
            .filter(|(k, _)| k != "X402__DATABASE__URL"),
    );
    let a = Proc::start(&env).await;
    let b = Proc::start(&env).await;

    let http = reqwest::Client::new();
    for (proc, payment) in [
        (&a, harness::funded_payment(&chain).await),
        (&b, harness::funded_payment(&chain).await),
    ] {
        let settled: Value = http
            .post(format!("{}/settle", proc.base))
            .json(&payment.body())
            .send()
            .await
            .expect("settle sent")
            .json()
            .await
            .expect("JSON");
        assert_eq!(settled["success"], true, "{settled}");
        let health = http
            .get(format!("{}/health", proc.base))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), 200);
        let console = |token: Option<&str>| {
            let mut req = http.get(format!("{}/console/networks", proc.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        assert_eq!(console(None).await.expect("console").status(), 401);
        let page = console(Some("compose-test-token")).await.expect("console");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        assert!(
            html.contains(&format!("eip155:{}", chain.chain_id)),
            "{html}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM settlements WHERE state = 'settled'")
            .await,
        2
    );
    a.kill().await;
    b.kill().await;
}

//! `scripts/demo --once` and `scripts/demo --solana --once`, run as a newcomer would (through the
//! script, provisioning and all): each must exit 0 after one paid request, print every section,
//! agree with itself across them, and report that each printed figure matched the chain when it
//! read them back.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// Runs `scripts/demo --once` with `args` and checks what every demo must print; returns its
/// stdout and its `demo-check` line's checks, all of which passed, and the transaction they
/// read back.
async fn demo_once(args: &[&str]) -> (String, Vec<Value>, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = Command::new(format!("{root}/scripts/demo"))
        .args(args)
        .arg("--once")
        // The suite's own features, so the demo reuses the suite's build instead of a second one.
        .env("X402_DEMO_FEATURES", "fault-injection")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("scripts/demo --once finished within 10 minutes")
        .expect("scripts/demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed\n{stdout}\n{stderr}");

    for heading in [
        "== paid response from the seller",
        "== settle answer (POST /settle",
        "== on-chain transfer",
        "== receipt (GET /settlements/",
        "== console",
    ] {
        assert!(stdout.contains(heading), "no `{heading}` in\n{stdout}");
    }
    let check: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo-check: "))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no demo-check line in\n{stdout}"));
    assert_eq!(check["ok"], true, "{check}");
    let checks = check["checks"].as_array().expect("checks").clone();
    assert!(checks.iter().all(|c| c["ok"] == true), "{check}");
    // The transaction the checks read back is the one every section printed.
    let tx = check["transaction"]
        .as_str()
        .expect("transaction")
        .to_string();
    assert!(stdout.contains(&format!("\"transaction\": \"{tx}\"")));
    assert!(stdout.contains(&format!("GET /settlements/{tx}, HTTP 200")));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("http://127.0.0.1:") && l.ends_with("/console/settlements")),
        "no console URL in\n{stdout}"
    );
    (stdout, checks, tx)
}

#[tokio::test]
async fn demo_once_pays_and_every_printed_figure_matches_the_chain() {
    let (_, checks, tx) = demo_once(&[]).await;
    assert_eq!(checks.len(), 9, "{checks:?}");
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
}

#[tokio::test]
async fn demo_solana_once_pays_on_the_local_solana_chain_and_every_printed_figure_matches_it() {
    let (stdout, checks, tx) = demo_once(&["--solana"]).await;
    assert_eq!(checks.len(), 12, "{checks:?}");
    // A Solana transaction id: the base58 of a 64-byte signature.
    assert!(
        bs58::decode(&tx).into_vec().is_ok_and(|b| b.len() == 64),
        "{tx}"
    );
    for figure in [
        "\"network\": \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"",
        "\"feePayer\":",
        "\"readFromChain\":",
    ] {
        assert!(stdout.contains(figure), "no `{figure}` in\n{stdout}");
    }
}

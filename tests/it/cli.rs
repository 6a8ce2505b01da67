//! The binary's subcommands, run as an operator would run them.

use std::process::Command;

use crate::harness::Db;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_x402-facilitator"))
}

#[test]
fn check_config_prints_effective_settings_without_secrets() {
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let out = bin()
        .arg("check-config")
        .env("X402__NETWORKS__LOCAL__NETWORK", "eip155:31337")
        .env(
            "X402__NETWORKS__LOCAL__RPC_URLS",
            "https://base.example/v2/RPCKEY0123,https://apikey:RPCPASS@rpc.example:8545",
        )
        .env("X402__NETWORKS__LOCAL__SIGNER_KEYS", key)
        .env("X402__DATABASE__URL", "postgres://user:hunter2@127.0.0.1/x")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("eip155:31337") && stdout.contains("<redacted>"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&key[2..]) && !stdout.contains("hunter2"),
        "secret printed: {stdout}"
    );
    // RPC URLs carry provider keys in the path and the user info: only scheme and host show.
    assert!(
        !stdout.contains("RPCKEY0123") && !stdout.contains("RPCPASS") && !stdout.contains("apikey"),
        "an RPC key was printed: {stdout}"
    );
    assert!(
        stdout.contains("https://base.example/<redacted>"),
        "{stdout}"
    );
}

#[test]
fn check_config_rejects_a_bad_key_without_echoing_it() {
    let out = bin()
        .arg("check-config")
        .env("X402__NETWORKS__LOCAL__NETWORK", "eip155:31337")
        .env("X402__NETWORKS__LOCAL__RPC_URLS", "http://127.0.0.1:1")
        .env("X402__NETWORKS__LOCAL__SIGNER_KEYS", "0xnotakey-secretish")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("signer key #1") && !stderr.contains("secretish"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_creates_the_ledger_on_postgres() {
    let db = Db::postgres().await;
    let out = bin()
        .arg("migrate")
        .env("X402__DATABASE__URL", db.url())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.count("SELECT count(*) FROM settlements").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .await,
        crate::harness::db::migration_files(),
        "every migration file is applied once"
    );
}

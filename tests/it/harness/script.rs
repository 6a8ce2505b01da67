//! Running a helper script (Node or Python) that reads a JSON job on stdin and prints JSON.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long any one script may run before the test fails.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `program args…` with `job` (if any) on stdin; returns the JSON it prints.
pub async fn run_json(program: &str, args: &[String], job: Option<&Value>) -> Value {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if job.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {program} (run the suite with scripts/test): {e}")
        });
    if let Some(job) = job {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(job.to_string().as_bytes())
            .await
            .expect("job written");
    }
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("script ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

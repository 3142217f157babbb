//! `corral bench` through the real binary against a real server: what it does when its
//! output cannot be written.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};

use common::ServerBuilder;

/// A report that cannot be printed (stdout on a full disk) ends the run with a clear error
/// and exit code 1, not a panic (101), and the JSON report is still written.
#[test]
fn a_report_that_cannot_be_printed_is_an_error_not_a_panic() {
    let server = ServerBuilder::new().start();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let full = File::create("/dev/full").expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "bench",
            "--server",
            &server.addr(),
            "--workload",
            "get",
            "--clients",
            "1",
            "--in-flight",
            "1",
            "--keys",
            "10",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::from(full))
        .output()
        .expect("run corral bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot write the report to stdout"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).unwrap();
    assert_eq!(report["workload"], "get", "{report}");
    assert!(report["ops"].as_u64().unwrap_or(0) > 0, "{report}");
}

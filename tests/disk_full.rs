//! A full disk under the transaction log: the server must stop acknowledging writes (never
//! acknowledge what is not on disk), say so clearly, and keep serving reads.
//!
//! The data directory is a tiny tmpfs mounted for the test, which needs root; where mounting
//! is not possible the test says so and does nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use zookeeper_client as zk;

/// A tmpfs mounted for the life of the value.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Option<TinyFs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(TinyFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn full_disk_stops_writes_and_keeps_reads() {
    if !is_corral() {
        return;
    }
    let Some(fs) = TinyFs::mount("3m") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data: PathBuf = fs.path().join("data");
    let s = ServerBuilder::new()
        .extra(&format!("dataDir={}", data.display()))
        // Small segments, so the log needs new space early and often.
        .extra("preAllocSize=128")
        .start();
    let c = s.client().await;
    c.create("/full", b"", &persistent()).await.unwrap();
    let value = vec![7u8; 4096];
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..10_000 {
        let path = format!("/full/n{i:05}");
        match c.create(&path, &value, &persistent()).await {
            Ok(_) => acked.push(path),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 3 MiB disk must fill up before 40 MiB are written");
    assert!(
        acked.len() > 10,
        "some writes fit before the disk is full ({} did)",
        acked.len()
    );
    assert!(
        matches!(
            failure,
            zk::Error::NotReadOnly | zk::Error::ConnectionLoss | zk::Error::SessionExpired
        ),
        "unexpected error once the disk is full: {failure:?}"
    );
    // The server says why, in words an operator understands.
    let log = poll_until("the log failure to be reported", || {
        let log = s.log_contents();
        log.contains("the transaction log failed").then_some(log)
    });
    assert!(
        log.contains("No space left on device") || log.contains("os error 28"),
        "the reason is named: {log}"
    );
    // Reads keep working for a new session, and every acknowledged write is there.
    let r = s.client().await;
    let children = r.list_children("/full").await.unwrap();
    for path in &acked {
        let name = path.rsplit('/').next().unwrap();
        assert!(
            children.iter().any(|c| c == name),
            "acknowledged {path} missing"
        );
    }
    let (got, _) = r.get_data(&acked[0]).await.unwrap();
    assert_eq!(got, value);
    // Writes are refused, not acknowledged.
    assert_eq!(
        r.create("/after", b"x", &persistent()).await.unwrap_err(),
        zk::Error::NotReadOnly
    );
    assert_eq!(s.four_letter("isro"), "ro");
}

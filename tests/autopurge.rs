//! Snapshots are taken every `snapCount` transactions and `autopurge` keeps only the newest
//! `autopurge.snapRetainCount` of them (and the log segments they need), while the data stays
//! whole across a restart.

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && !n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn snapshots_roll_and_autopurge_keeps_the_newest() {
    if !is_corral() {
        return;
    }
    let mut s = ServerBuilder::new()
        .extra("snapCount=40")
        .extra("autopurge.snapRetainCount=3")
        .extra("autopurge.purgeInterval=100ms")
        // Small segments, so purging has old segments to delete.
        .extra("preAllocSize=16")
        .start();
    let dir = s.data_dir().join("corral-v1");
    let c = s.client().await;
    c.create("/p", b"", &persistent()).await.unwrap();
    for round in 0..40 {
        for i in 0..25 {
            let path = format!("/p/r{round:02}n{i:02}");
            c.create(&path, &[round as u8; 300], &persistent())
                .await
                .unwrap();
        }
        // Idle moments let a due snapshot start.
        let _ = c.get_data("/p").await.unwrap();
    }
    // Many snapshots were taken over 1,000 transactions; purging leaves three.
    poll_until("snapshots to be taken and purged down to 3", || {
        let snaps = files_with_prefix(&dir, "snapshot.");
        (snaps.len() == 3).then_some(())
    });
    let segments = files_with_prefix(&dir, "log.");
    assert!(
        segments[0].as_str() > "log.0000000000000001",
        "the oldest log segments were purged too: {segments:?}"
    );
    // Everything is still there after a restart from the retained snapshot and log.
    drop(c);
    s.restart();
    let c = s.client().await;
    let children = c.list_children("/p").await.unwrap();
    assert_eq!(children.len(), 1000);
    let (data, stat) = c.get_data("/p/r39n24").await.unwrap();
    assert_eq!(data, vec![39u8; 300]);
    assert_eq!(stat.version, 0);
}

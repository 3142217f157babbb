mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let s = ServerBuilder::new().start();
    s.assert_healthy().await;
    s.assert_healthy_raw();
}

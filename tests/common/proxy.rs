//! A tiny TCP forwarding proxy that can cut every connection passing through it and refuse new
//! ones for a while — to make a real client lose its connection and reconnect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    addr: String,
    blocked: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Start a proxy on a free loopback port forwarding to `upstream`. Must be called inside a
    /// tokio runtime.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let blocked = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_string();
        let accept = {
            let blocked = blocked.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        return;
                    };
                    if blocked.load(Ordering::SeqCst) {
                        drop(down);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let h = tokio::spawn(async move {
                        if let Ok(mut up) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        }
                    });
                    conns.lock().unwrap().push(h);
                }
            })
        };
        Proxy {
            addr,
            blocked,
            conns,
            accept,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Refuse (accept and immediately close) new connections until [`Self::unblock`].
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }

    /// Abort every connection currently forwarded (both sockets get closed).
    pub fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

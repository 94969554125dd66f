//! A TCP proxy on loopback that can be cut (connections dropped, new ones refused) and restored,
//! to simulate a broker outage without touching the broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub port: u16,
    upstream: String,
    up: Arc<AtomicBool>,
    generation: std::sync::Mutex<CancellationToken>,
}

impl Proxy {
    /// Proxies 127.0.0.1:`port` → `upstream`.
    pub async fn start(port: u16, upstream: String) -> Arc<Self> {
        let p = Arc::new(Self {
            port,
            upstream,
            up: Arc::new(AtomicBool::new(false)),
            generation: std::sync::Mutex::new(CancellationToken::new()),
        });
        p.restore().await;
        p
    }

    /// Accepts connections again.
    pub async fn restore(self: &Arc<Self>) {
        let token = CancellationToken::new();
        *self.generation.lock().unwrap() = token.clone();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        self.up.store(true, Ordering::SeqCst);
        let upstream = self.upstream.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = token.cancelled() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let upstream = upstream.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {},
                        _ = token.cancelled() => {},
                    }
                });
            }
        });
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.lock().unwrap().cancel();
    }
}

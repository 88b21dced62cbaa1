//! A network link between two nodes on loopback that a test can cut and heal: a TCP forwarder
//! on `127.0.0.1:0` in front of a target address. While cut, every open connection is dropped
//! and new ones are closed at once, as a partition looks to an HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One direction of reachability: whoever connects to [`Link::addr`] reaches the target.
pub struct Link {
    pub addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A forwarder to `target`, up.
    pub async fn new(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(watch::channel(true).0);
        let task = tokio::spawn(accept(listener, target, up.clone()));
        Link { addr, up, task }
    }

    /// `http://127.0.0.1:PORT` of the forwarder.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn heal(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, up: Arc<watch::Sender<bool>>) {
    while let Ok((inbound, _)) = listener.accept().await {
        if !*up.borrow() {
            drop(inbound);
            continue;
        }
        tokio::spawn(forward(inbound, target, up.subscribe()));
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

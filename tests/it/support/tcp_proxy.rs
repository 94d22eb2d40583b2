//! A TCP forwarder on loopback that can be switched off, to make a server unreachable
//! (connections refused and open ones cut), or silent (connections accepted and never
//! answered, as a region that stopped answering), and reachable again.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Forwarding,
    /// New connections are dropped at once and open ones cut.
    Refusing,
    /// Connections are held open and nothing is answered or forwarded.
    Silent,
}

pub(crate) struct TcpProxy {
    pub address: SocketAddr,
    mode: watch::Sender<Mode>,
    server: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, watcher) = watch::channel(Mode::Forwarding);
        let server = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let mut watcher = watcher.clone();
                tokio::spawn(async move {
                    let mode = *watcher.borrow_and_update();
                    match mode {
                        Mode::Refusing => return,
                        // Held, unanswered, until the mode changes.
                        Mode::Silent => {
                            let _ = watcher.changed().await;
                            return;
                        }
                        Mode::Forwarding => {}
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    let mut client = client;
                    let silenced = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        mode = watcher.wait_for(|mode| *mode != Mode::Forwarding) => {
                            mode.is_ok_and(|mode| *mode == Mode::Silent)
                        }
                    };
                    if silenced {
                        let _ = watcher.changed().await;
                    }
                });
            }
        });
        Self { address, mode, server }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Cuts every open connection and drops new ones until `set_up(true)`.
    pub(crate) fn set_up(&self, up: bool) {
        self.set_mode(if up { Mode::Forwarding } else { Mode::Refusing });
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

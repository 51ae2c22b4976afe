//! A TCP proxy between a client and a node, for fault tests: add latency, hold every byte (a blackhole that
//! a later [`Proxy::pass`] ends, as TCP's retransmissions would), refuse and reset connections, or half-close
//! them. It runs on its own thread and runtime, so a test's runtime (paused, blocked, single-threaded) cannot
//! stall it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Forward every byte, after `delay` (zero: at once).
    Pass { delay: Duration },
    /// Accept connections and keep them open, but forward nothing until the mode changes.
    Hold,
    /// Reset every connection, and each new one at once: the node looks down.
    Refuse,
}

#[derive(Default)]
struct Links {
    /// Per connection: cancelled to reset it, or to half-close it.
    live: Vec<(CancellationToken, CancellationToken)>,
}

/// A running proxy; stops (resetting its connections) on drop.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    links: Arc<Mutex<Links>>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` (host:port).
    pub fn start(target: &str) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy: bind a free port");
        std_listener
            .set_nonblocking(true)
            .expect("proxy: non-blocking listener");
        let addr = std_listener.local_addr().expect("proxy: local address");
        let (mode, mode_rx) = watch::channel(Mode::Pass { delay: Duration::ZERO });
        let links = Arc::new(Mutex::new(Links::default()));
        let stop = CancellationToken::new();
        let target = target.to_string();
        let (l2, s2) = (links.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy: runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("proxy: listener");
                accept_loop(listener, target, mode_rx, l2, s2).await;
            });
        });
        Proxy {
            addr,
            mode,
            links,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Forwards every byte after `delay` (held bytes are released).
    pub fn pass(&self, delay: Duration) {
        self.mode.send_replace(Mode::Pass { delay });
    }

    /// Forwards nothing until [`Proxy::pass`]; connections stay open.
    pub fn hold(&self) {
        self.mode.send_replace(Mode::Hold);
    }

    /// Resets every open connection and each new one, until [`Proxy::pass`].
    pub fn refuse(&self) {
        self.mode.send_replace(Mode::Refuse);
        self.reset_all();
    }

    /// Resets every open connection (new ones are served as the mode says).
    pub fn reset_all(&self) {
        let mut l = self.links.lock().unwrap_or_else(|p| p.into_inner());
        for (reset, _) in l.live.drain(..) {
            reset.cancel();
        }
    }

    /// Closes the node-to-client direction of every open connection (the client reads EOF) while the client
    /// may still write.
    pub fn half_close_all(&self) {
        let l = self.links.lock().unwrap_or_else(|p| p.into_inner());
        for (_, half) in &l.live {
            half.cancel();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.reset_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SO_LINGER 0: closing the socket sends RST at once (a reset, the fault wanted). tokio deprecates linger
/// because a non-zero linger blocks the thread on drop; a zero linger never does.
#[allow(deprecated)]
fn reset_on_close(s: &TcpStream) -> std::io::Result<()> {
    s.set_linger(Some(Duration::ZERO))
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    mode: watch::Receiver<Mode>,
    links: Arc<Mutex<Links>>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((c, _)) => c,
                Err(_) => continue,
            },
        };
        if *mode.borrow() == Mode::Refuse {
            let _ = reset_on_close(&client);
            continue;
        }
        let (reset, half) = (stop.child_token(), CancellationToken::new());
        links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .push((reset.clone(), half.clone()));
        let (target, mode) = (target.clone(), mode.clone());
        tokio::spawn(async move {
            let Ok(node) = TcpStream::connect(&target).await else {
                let _ = reset_on_close(&client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = node.set_nodelay(true);
            let _ = reset_on_close(&client);
            let _ = reset_on_close(&node);
            let (cr, cw) = client.into_split();
            let (nr, nw) = node.into_split();
            let up = pump(cr, nw, mode.clone(), CancellationToken::new());
            let down = pump(nr, cw, mode, half);
            // Dropping both halves with linger 0 sends RST: a reset, not a clean close.
            tokio::select! {
                _ = reset.cancelled() => {}
                _ = async { tokio::join!(up, down) } => {}
            }
        });
    }
}

/// Copies `from` to `to` as the mode says; on `half`, shuts `to` down (FIN) and keeps draining `from`.
async fn pump<R, W>(mut from: R, mut to: W, mut mode: watch::Receiver<Mode>, half: CancellationToken)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut open = true;
    loop {
        let n = tokio::select! {
            _ = half.cancelled(), if open => {
                let _ = to.shutdown().await;
                open = false;
                continue;
            }
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
        };
        // Wait while held; apply the delay of the mode in force once the bytes may go.
        let delay = loop {
            let m = *mode.borrow_and_update();
            match m {
                Mode::Pass { delay } => break delay,
                Mode::Refuse => return,
                Mode::Hold => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if open && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

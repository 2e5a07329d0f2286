//! The HTTP server loop: hyper with a timer, bounded in connections, per client address
//! and in time, so that silent and slow clients cannot take a node's HTTP away.
//!
//! - **Connections.** At most [`MAX_CONNECTIONS`] at once, and [`MAX_PER_ADDRESS`] from
//!   one client address; a connection over either cap is closed as soon as it is
//!   accepted.
//! - **Headers.** A request's head must arrive within [`HEADER_TIMEOUT`], and an idle
//!   keep-alive connection waits at most that long for the next one.
//! - **Progress.** A response the client takes no byte of for [`IDLE_TIMEOUT`] (a
//!   client that opened a download and stopped reading) closes its connection, and the
//!   download slot the response held is freed.
//!
//! Each connection is a task in one owned [`tokio::task::JoinSet`]; on shutdown the
//! server stops accepting, lets open requests finish for [`DRAIN_TIME`], then ends the
//! rest.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use std::future::Future as _;

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
    time::Sleep,
};
use tokio_util::sync::CancellationToken;

/// Most HTTP connections open at once.
pub const MAX_CONNECTIONS: usize = 2048;
/// Most HTTP connections open at once from one client address.
pub const MAX_PER_ADDRESS: usize = 64;
/// How long a request head may take to arrive, and an idle keep-alive connection may wait.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may wait for the client to take another byte.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open requests may run on after shutdown begins.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerAddress`], given back when dropped.
struct Slot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(table: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut m = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= MAX_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that fails a write which has waited [`IDLE_TIMEOUT`] without progress:
/// the client stopped reading. The timer is polled with the I/O, so it wakes the task
/// when it runs out, and hyper sees an error and closes the connection.
struct Patient {
    io: TcpStream,
    writing: Option<Pin<Box<Sleep>>>,
}

impl Patient {
    fn new(io: TcpStream) -> Self {
        Self { io, writing: None }
    }

    /// What to answer for a write that is `Pending`: still `Pending` while the timer
    /// runs, an error once it has run out.
    fn waited<T>(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(IDLE_TIMEOUT)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => {
                *timer = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client moved no byte for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Patient {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Reads have no timer here: hyper bounds the wait for a request head itself
        // (`HEADER_TIMEOUT`), and while a request is being handled it reads only to see
        // whether the client went away, which may rightly take as long as the handler.
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Patient {
    /// Passes on the result of a write-side operation, timing it while it is pending.
    fn writing<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => Self::waited(&mut self.writing, cx),
            done => {
                self.writing = None;
                done
            }
        }
    }
}

impl AsyncWrite for Patient {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.writing(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.writing(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.writing(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `cancel` fires, then finishes open requests.
pub async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_address = Arc::new(PerAddress::default());
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, from) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: give others a moment.
                        tracing::warn!("cannot accept an HTTP connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    tracing::debug!(%from, "too many HTTP connections; closed");
                    continue;
                };
                let Some(slot) = PerAddress::take(&per_address, from.ip()) else {
                    tracing::debug!(%from, "too many HTTP connections from one address; closed");
                    continue;
                };
                stream.set_nodelay(true).ok();
                let service = TowerToHyperService::new(router.clone());
                let cancel = cancel.clone();
                conns.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(Patient::new(stream)), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(%from, "HTTP connection ended: {e}");
                            }
                        }
                        () = cancel.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await.ok();
                        }
                    }
                    drop((permit, slot));
                });
            }
        }
    }
    // Open requests get a little time to finish; then they are ended.
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
}

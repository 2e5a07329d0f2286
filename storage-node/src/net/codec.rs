//! The control protocol's codec: libp2p's CBOR codec, with every message's bytes counted
//! by direction and kind for `/metrics`.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use async_trait::async_trait;
use futures::{AsyncRead, AsyncWrite};
use libp2p::{StreamProtocol, request_response};

use super::{
    metrics::{ControlBytes, Direction, Part},
    wire::{self, Request, Response},
};

type Cbor = request_response::cbor::codec::Codec<Request, Response>;

/// The CBOR codec with the size limits of [`wire`], counting what passes through it.
#[derive(Clone)]
pub(crate) struct CountingCodec {
    inner: Cbor,
    counts: ControlBytes,
}

impl CountingCodec {
    pub(crate) fn new(counts: ControlBytes) -> Self {
        Self {
            inner: Cbor::default()
                .set_request_size_maximum(wire::MAX_REQUEST)
                .set_response_size_maximum(wire::MAX_RESPONSE),
            counts,
        }
    }
}

#[async_trait]
impl request_response::Codec for CountingCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut io = Counted::new(io);
        let r = self.inner.read_request(p, &mut io).await;
        let kind = r.as_ref().map_or("malformed", Request::kind);
        self.counts
            .add(Direction::In, Part::Request, kind, io.bytes);
        r
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut io = Counted::new(io);
        let r = self.inner.read_response(p, &mut io).await;
        let kind = r.as_ref().map_or("malformed", Response::kind);
        self.counts
            .add(Direction::In, Part::Response, kind, io.bytes);
        r
    }

    async fn write_request<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let kind = req.kind();
        let mut io = Counted::new(io);
        let r = self.inner.write_request(p, &mut io, req).await;
        self.counts
            .add(Direction::Out, Part::Request, kind, io.bytes);
        r
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let kind = res.kind();
        let mut io = Counted::new(io);
        let r = self.inner.write_response(p, &mut io, res).await;
        self.counts
            .add(Direction::Out, Part::Response, kind, io.bytes);
        r
    }
}

/// A stream that counts the bytes read from or written to it.
struct Counted<'a, T> {
    inner: &'a mut T,
    bytes: u64,
}

impl<'a, T> Counted<'a, T> {
    fn new(inner: &'a mut T) -> Self {
        Self { inner, bytes: 0 }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes += n as u64;
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes += n as u64;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;
    use crate::net::metrics::NetMetrics;

    #[tokio::test]
    async fn every_message_is_counted_by_kind_and_direction() {
        let metrics = NetMetrics::new();
        let mut codec = CountingCodec::new(metrics.control_bytes());
        let p = StreamProtocol::new(wire::CONTROL_PROTOCOL);
        let mut buf = Cursor::new(Vec::new());
        codec
            .write_request(&p, &mut buf, Request::Peers)
            .await
            .expect("written");
        let sent = buf.get_ref().len() as u64;
        assert!(sent > 0);
        buf.set_position(0);
        let back = codec.read_request(&p, &mut buf).await.expect("read");
        assert!(matches!(back, Request::Peers));
        // Junk is counted too, under its own name.
        let mut junk = Cursor::new(vec![0xff; 10]);
        assert!(codec.read_response(&p, &mut junk).await.is_err());
        let text = metrics.render();
        for line in [
            format!(
                "cairn_control_bytes_total{{direction=\"out\",part=\"request\",kind=\"peers\"}} {sent}"
            ),
            format!(
                "cairn_control_bytes_total{{direction=\"in\",part=\"request\",kind=\"peers\"}} {sent}"
            ),
            "cairn_control_bytes_total{direction=\"in\",part=\"response\",kind=\"malformed\"} 10"
                .to_string(),
        ] {
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
    }
}

//! The types the proxy's parts hand each other: an error of any kind, a response body of any
//! kind, and an open upstream connection whatever its layers (TCP, TLS, a tunnel).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response body: an upstream's, streamed, or one the proxy wrote.
pub type Body = BoxBody<Bytes, BoxError>;

/// The stream types a connection can be (TCP, TLS over TCP, TLS through a tunnel) as one.
pub trait Io: Read + Write + Send + Unpin {}
impl<T: Read + Write + Send + Unpin> Io for T {}

/// An open upstream connection.
pub struct Conn {
    io: Box<dyn Io>,
    /// TLS agreed on HTTP/2.
    h2: bool,
    /// A plain-HTTP proxy: requests name the whole URL.
    proxied: bool,
}

impl Conn {
    pub fn new(io: impl Io + 'static, h2: bool) -> Self {
        Self {
            io: Box::new(io),
            h2,
            proxied: false,
        }
    }

    /// The connection is to a plain-HTTP proxy: requests on it name the whole URL.
    pub fn through_plain_http_proxy(mut self) -> Self {
        self.proxied = true;
        self
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let connected = Connected::new().proxy(self.proxied);
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }

    // A request's head and body go out in one system call where the stream allows.
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }
}

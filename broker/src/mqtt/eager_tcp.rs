//! A TCP connection whose first read and first write go straight to the
//! socket.
//!
//! tokio learns that a freshly accepted socket is readable or writable only
//! from the reactor's next poll, so a connection task that reads its CONNECT
//! right after the accept waits for one round of the reactor even when the
//! packet is already in the socket buffer, and the CONNACK waits for another
//! readiness report if it is written first. Clients speak first in every
//! protocol Parley serves (CONNECT, a TLS ClientHello, an HTTP upgrade), and
//! under a connection storm the CONNECT is usually there by the time the
//! socket is accepted. [`EagerTcp`] tries the first read and the first write
//! as plain non-blocking calls on the socket and only falls back to tokio's
//! readiness when they would block, which takes that reactor round off the
//! path to CONNACK. After them it is the tokio stream unchanged.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] that tries its first read and first write without
/// waiting for the reactor (see the module documentation).
#[derive(Debug)]
pub struct EagerTcp {
    stream: TcpStream,
    read_tried: bool,
    write_tried: bool,
}

impl EagerTcp {
    /// Wraps a freshly accepted stream.
    pub fn new(stream: TcpStream) -> Self {
        EagerTcp {
            stream,
            read_tried: false,
            write_tried: false,
        }
    }
}

/// The outcome of a direct call: `None` if it would block.
fn direct(result: io::Result<usize>) -> Option<io::Result<usize>> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        other => Some(other),
    }
}

impl AsyncRead for EagerTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_tried && buf.remaining() > 0 {
            self.read_tried = true;
            let socket = SockRef::from(&self.stream);
            // The socket is non-blocking: this returns at once.
            if let Some(result) = direct((&*socket).read(buf.initialize_unfilled())) {
                return Poll::Ready(result.map(|n| buf.advance(n)));
            }
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EagerTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.write_tried && !data.is_empty() {
            self.write_tried = true;
            let socket = SockRef::from(&self.stream);
            if let Some(result) = direct((&*socket).write(data)) {
                return Poll::Ready(result);
            }
        }
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.write_tried {
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                return self.poll_write(cx, first);
            }
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (EagerTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (EagerTcp::new(accepted), client)
    }

    #[tokio::test]
    async fn reads_what_is_already_there_and_what_comes_later() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"first").await.unwrap();
        // Wait until the bytes are in the server's socket buffer.
        let socket = SockRef::from(&server.stream);
        let mut peek = [std::mem::MaybeUninit::<u8>::uninit(); 5];
        while socket.peek(&mut peek).unwrap_or(0) < 5 {
            tokio::task::yield_now().await;
        }
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"first");
        // Later reads wait on the reactor as usual.
        let reader = tokio::spawn(async move {
            let mut later = [0u8; 5];
            server.read_exact(&mut later).await.unwrap();
            (server, later)
        });
        client.write_all(b"later").await.unwrap();
        let (_server, later) = reader.await.unwrap();
        assert_eq!(&later, b"later");
    }

    #[tokio::test]
    async fn a_first_read_with_nothing_there_waits_for_data() {
        let (mut server, mut client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.unwrap();
            got
        });
        tokio::task::yield_now().await;
        client.write_all(b"ping").await.unwrap();
        assert_eq!(&reader.await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn writes_reach_the_peer_and_end_of_stream_is_seen() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"connack").await.unwrap();
        server.write_all(b" and more").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"connack and more");
        drop(client);
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }
}

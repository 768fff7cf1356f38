//! Opening a TCP connection to a broker from a chosen source address (a
//! TCP client normally gets one of ~28k ephemeral ports of one address; the
//! bench binds sockets to many loopback addresses to go past that), with
//! Nagle's algorithm off.

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The socket could not be made or configured.
    #[error("socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The socket could not be bound to the source address.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The source address.
        addr: IpAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TCP connect failed.
    #[error("tcp connect: {0}")]
    Connect(#[source] std::io::Error),
}

/// Connects to `target`, from `source` if given (else the kernel's choice).
pub async fn dial(target: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, DialError> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(DialError::Socket)?;
    if let Some(addr) = source {
        socket
            .bind(SocketAddr::new(addr, 0))
            .map_err(|source| DialError::Bind { addr, source })?;
    }
    socket.set_nodelay(true).map_err(DialError::Socket)?;
    socket.connect(target).await.map_err(DialError::Connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_the_source_address_or_says_which_step_failed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.2".parse().unwrap();
        let stream = dial(target, Some(source)).await.expect("connected");
        assert_eq!(stream.local_addr().unwrap().ip(), source);
        assert!(stream.nodelay().unwrap());

        let foreign: IpAddr = "192.0.2.1".parse().unwrap();
        let err = dial(target, Some(foreign)).await.unwrap_err();
        assert!(
            matches!(err, DialError::Bind { addr, .. } if addr == foreign),
            "{err}"
        );
        drop(listener);
        let err = dial(target, None).await.unwrap_err();
        assert!(matches!(err, DialError::Connect(_)), "{err}");
    }
}

//! STARTTLS: loading the certificate and key, and a connection type that can switch
//! from plain TCP to TLS in the middle of a session (RFC 3207).
//!
//! One rustls crypto provider (ring) serves the whole binary: [`install_crypto_provider`]
//! makes it the process default at start-up, and the acceptor names it explicitly so
//! the server works even when something else installed a different default.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, ErrorKind, Result};

/// Makes ring the process-wide rustls provider (harmless if one is already set).
pub fn install_crypto_provider() {
    let _ = ring::default_provider().install_default();
}

/// Builds a TLS acceptor from PEM files (certificate chain, private key).
pub fn load_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::io(ErrorKind::Config, "cannot read TLS file", p, e))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::io(ErrorKind::Config, "bad PEM certificate in", cert, e))?;
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\")",
                cert.display()
            ),
        ));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::io(ErrorKind::Config, "bad PEM key in", key, e))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{}: no private key found (expected PEM)", key.display()),
            )
        })?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!(
                    "cannot use TLS certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                ),
                e,
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client connection, plain or upgraded to TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TLS handshake runs; any I/O then is a bug and fails.
    Upgrading,
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

fn upgrading() -> io::Error {
    io::Error::other("connection is being upgraded to TLS")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

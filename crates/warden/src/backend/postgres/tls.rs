//! How warden's connections to PostgreSQL are made: plain, or TLS with the server's certificate checked against
//! the CA of `sslrootcert` and its name against the host (`sslmode=verify-full`). One connect function for
//! both, which also drives the connection and hands its notifications to a wake router.

#[allow(unused_imports)]
use super::*;
use futures::future::poll_fn;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Socket};

/// Plain, or TLS (rustls with the ring provider).
#[derive(Clone)]
pub(crate) enum Tls {
    Off,
    On(tokio_postgres_rustls::MakeRustlsConnect),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tls::Off => "plain",
            Tls::On(_) => "TLS (verify-full)",
        })
    }
}

impl Tls {
    /// TLS that trusts the CA certificates in the PEM file at `path`.
    pub(super) fn verify_full(path: &str) -> Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let bad = |why: String| Error::invalid("sslrootcert", why);
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read `{path}`: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("`{path}` is not a PEM certificate file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("`{path}` holds a certificate rustls refuses: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad(format!("`{path}` holds no certificate")));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls::On(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }

    /// Connects one client and drives its connection in a task (aborted with the returned guard); the
    /// connection's notifications go to `router`, if given.
    pub(super) async fn connect(
        &self,
        config: &tokio_postgres::Config,
        router: Option<Arc<WakeRouter>>,
    ) -> std::result::Result<(Client, AbortOnDrop), tokio_postgres::Error> {
        match self {
            Tls::Off => connect_with(config, tokio_postgres::NoTls, router).await,
            Tls::On(tls) => connect_with(config, tls.clone(), router).await,
        }
    }
}

async fn connect_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
    router: Option<Arc<WakeRouter>>,
) -> std::result::Result<(Client, AbortOnDrop), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut conn) = config.connect(tls).await?;
    let driver = tokio::spawn(async move {
        while let Some(m) = poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Some(r) = &router {
                        r.deliver(n.payload());
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok((client, AbortOnDrop(driver)))
}

//! HTTPS: a certificate from the test's own CA, the http backend over `https://` with that CA, a wrong CA and
//! plain HTTP refused with a sentence, and client certificates when the server asks for them.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use warden::Warden;
use warden_server::ServerConfig;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        Ca { cert, key }
    }

    /// A leaf signed by this CA: (certificate PEM, key PEM).
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.cert.pem()).expect("write CA");
        p
    }
}

struct Tls {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Tls {
    fn new() -> Tls {
        Tls {
            dir: tempfile::tempdir().expect("temp dir"),
            ca: Ca::new("warden test CA"),
        }
    }

    fn server_config(&self, client_ca: Option<&Path>) -> std::sync::Arc<rustls::ServerConfig> {
        let (cert, key) = self
            .ca
            .issue(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let (c, k) = (self.dir.path().join("server.pem"), self.dir.path().join("server.key"));
        std::fs::write(&c, cert).expect("write cert");
        std::fs::write(&k, key).expect("write key");
        warden_server::tls::server_config(&c, &k, client_ca).expect("TLS config")
    }
}

fn https(s: &TestServer) -> String {
    s.base.replacen("http://", "https://", 1)
}

#[tokio::test]
async fn the_http_backend_speaks_https_with_a_private_ca() {
    let tls = Tls::new();
    let config = ServerConfig::default().with_tls(tls.server_config(None));
    let s = TestServer::start_with(Warden::connect("memory://").await.expect("memory"), config).await;
    let ca = tls.ca.write(tls.dir.path(), "ca.pem");

    let w = Warden::connect(&format!("{}?ca={}", https(&s), ca.display()))
        .await
        .expect("a good handshake");
    let mut g = w.lock("tls:job").acquire().await.expect("acquire over TLS");
    assert!(g.fencing_token() > 0);
    g.release().await.expect("release over TLS");

    // A CA that did not sign the server's certificate, and none at all: refused, saying why.
    let other = Ca::new("someone else's CA").write(tls.dir.path(), "other.pem");
    for url in [format!("{}?ca={}", https(&s), other.display()), https(&s)] {
        let e = Warden::connect(&url).await.expect_err("an unknown issuer was trusted");
        let text = e.to_string();
        assert!(matches!(e, warden::Error::BackendUnavailable { .. }), "{e:?}");
        assert!(text.contains("TLS") && text.contains("certificate"), "{text}");
    }
    // Plain HTTP to the TLS port: a sentence, not a hang or a reset.
    let e = Warden::connect(&s.base).await.expect_err("plain HTTP was served");
    assert!(e.to_string().contains("https://"), "{e}");
    let e = Warden::connect(&format!("{}?ca=/nonexistent/ca.pem", https(&s)))
        .await
        .expect_err("a missing CA file");
    assert!(matches!(e, warden::Error::InvalidArgument { field: "ca", .. }), "{e:?}");
}

#[tokio::test]
async fn a_server_that_asks_for_client_certificates_refuses_clients_without_one() {
    let tls = Tls::new();
    let clients = Ca::new("client CA");
    let client_ca = clients.write(tls.dir.path(), "clients.pem");
    let config = ServerConfig::default().with_tls(tls.server_config(Some(&client_ca)));
    let s = TestServer::start_with(Warden::connect("memory://").await.expect("memory"), config).await;
    let root = reqwest::Certificate::from_pem(tls.ca.cert.pem().as_bytes()).expect("root");
    let url = format!("{}/api/locks/stats", https(&s));

    let anonymous = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .expect("client");
    assert!(
        anonymous.get(&url).send().await.is_err(),
        "served a client without a certificate"
    );

    // A certificate from another CA is no better.
    let stranger = Ca::new("stranger CA").issue(&["intruder"], ExtendedKeyUsagePurpose::ClientAuth);
    let intruder = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .identity(reqwest::Identity::from_pem(format!("{}{}", stranger.0, stranger.1).as_bytes()).expect("id"))
        .build()
        .expect("client");
    assert!(
        intruder.get(&url).send().await.is_err(),
        "served a client of an unknown CA"
    );

    let (cert, key) = clients.issue(&["worker"], ExtendedKeyUsagePurpose::ClientAuth);
    let known = reqwest::Client::builder()
        .add_root_certificate(root)
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"))
        .build()
        .expect("client");
    let r = known.get(&url).send().await.expect("a known client certificate");
    assert_eq!(r.status(), 200);

    // The library's http backend presents one from `identity=`.
    let ca = tls.ca.write(tls.dir.path(), "ca.pem");
    let (cert, key) = clients.issue(&["library"], ExtendedKeyUsagePurpose::ClientAuth);
    let id = tls.dir.path().join("client.pem");
    std::fs::write(&id, format!("{cert}{key}")).expect("write identity");
    let w = Warden::connect(&format!("{}?ca={}&identity={}", https(&s), ca.display(), id.display()))
        .await
        .expect("connect with a client certificate");
    let g = w.lock("mtls:job").try_acquire().await.expect("acquire").expect("free");
    assert!(g.fencing_token() > 0);
    let e = Warden::connect(&format!("{}?ca={}", https(&s), ca.display()))
        .await
        .expect_err("connected without a client certificate");
    assert!(matches!(e, warden::Error::BackendUnavailable { .. }), "{e:?}");
}

//! A CA of the test's own and a server certificate it signed, for throwaway servers (PostgreSQL, Redis) that
//! speak TLS.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the files went.
pub(crate) struct Certs {
    /// The CA certificate (PEM), for clients.
    pub ca: PathBuf,
    /// The server's certificate (PEM), for `127.0.0.1` and `localhost`.
    pub cert: PathBuf,
    /// The server's key (PEM), readable by its owner only (PostgreSQL requires it).
    pub key: PathBuf,
}

/// Writes the CA into `dir` and the server's certificate and key into `data` (owned by `owner` when given).
pub(crate) fn write(dir: &Path, data: &Path, owner: Option<(u32, u32)>) -> Certs {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "warden test CA");
    let ca = params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server certificate");
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: data.join("server.crt"),
        key: data.join("server.key"),
    };
    std::fs::write(&certs.ca, ca.pem()).expect("write the CA");
    std::fs::write(&certs.cert, cert.pem()).expect("write the certificate");
    std::fs::write(&certs.key, key.serialize_pem()).expect("write the key");
    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
    if let Some((uid, gid)) = owner {
        crate::postgres_server::chown(&certs.cert, uid, gid);
        crate::postgres_server::chown(&certs.key, uid, gid);
    }
    certs
}

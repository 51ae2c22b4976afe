//! API keys: the auth file, its principals and roles, and reloading it without dropping a lock.
//!
//! The file is TOML, one `[[key]]` table per key, holding only the key's SHA-256 (an API key is 256 random
//! bits, so a plain hash is as strong as a slow one and costs nothing per request):
//!
//! ```toml
//! [[key]]
//! principal = "orders"          # who the key acts as; its clients become `orders/<clientId>`
//! role = "client"               # client | observer | admin
//! namespaces = ["orders:*"]     # resources it may lock: exact names, or prefixes ending in `*`
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! `warden keygen --principal orders --role client --namespace 'orders:*'` prints a new key and its table.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Lock, release, renew and inspect within its own namespaces, as its own clients.
    Client,
    /// Read every view (stats, queues, held leases by handle, metrics, events); lock nothing.
    Observer,
    /// Everything an observer may, lock within its namespaces, and force-release any lease.
    Admin,
}

impl Role {
    /// The role's name in the auth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Observer => "observer",
            Role::Admin => "admin",
        }
    }
}

/// The caller a key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name: 1..=64 of `A-Z a-z 0-9 _ . -`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Resource patterns it may lock: an exact name, or a prefix followed by `*` (`*` alone: everything).
    pub namespaces: Vec<String>,
}

impl Principal {
    /// Whether it may lock `resource`.
    pub fn may_lock(&self, resource: &str) -> bool {
        self.role != Role::Observer && self.owns(resource)
    }

    /// Whether `resource` lies in its namespaces.
    pub fn owns(&self, resource: &str) -> bool {
        self.namespaces.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => resource.starts_with(prefix),
            None => resource == p,
        })
    }

    /// Whether it may read every view (not only its own leases).
    pub fn sees_all(&self) -> bool {
        matches!(self.role, Role::Observer | Role::Admin)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    key: Vec<KeyToml>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyToml {
    principal: String,
    role: Role,
    #[serde(default)]
    namespaces: Vec<String>,
    sha256: String,
}

/// Why an auth file was refused: the file and a sentence naming the entry and field.
#[derive(Debug, thiserror::Error)]
#[error("auth file {path}: {reason}")]
pub struct AuthFileError {
    path: String,
    reason: String,
}

/// The keys of one auth file, by the SHA-256 of the key.
#[derive(Default)]
struct Keys(HashMap<[u8; 32], Arc<Principal>>);

/// The server's API keys, reloadable in place.
pub struct Auth {
    path: PathBuf,
    keys: RwLock<Arc<Keys>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("Auth")
            .field("path", &self.path)
            .field("keys", &self.len())
            .finish()
    }
}

impl Auth {
    /// Loads `path`; any mistake refuses the whole file with a sentence naming it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AuthFileError> {
        let path = path.as_ref().to_path_buf();
        let keys = parse_file(&path)?;
        Ok(Auth {
            path,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Reads the file again. On a mistake the keys in force stay and the error is returned: a bad edit never
    /// locks everyone out. Held locks are untouched either way.
    pub fn reload(&self) -> Result<usize, AuthFileError> {
        let keys = Arc::new(parse_file(&self.path)?);
        let n = keys.0.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(n)
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether no key is in force (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal `key` names, if any.
    pub fn principal(&self, key: &str) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        keys.0.get(&digest).cloned()
    }
}

/// A new API key: `wdn_` and 256 random bits in hex, and the SHA-256 the auth file stores.
pub fn new_key() -> (String, String) {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let key = format!("wdn_{}", hex(&b));
    let hash = hex(&Sha256::digest(key.as_bytes()));
    (key, hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_file(path: &Path) -> Result<Keys, AuthFileError> {
    let fail = |reason: String| AuthFileError {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let file: FileToml = toml::from_str(&text).map_err(|e| fail(format!("not valid: {}", e.message())))?;
    let mut keys = Keys::default();
    for (i, k) in file.key.into_iter().enumerate() {
        let at = |what: String| fail(format!("key #{} (principal `{}`): {what}", i + 1, k.principal));
        let name_ok = (1..=64).contains(&k.principal.len())
            && k.principal
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(at("`principal` must be 1..=64 of A-Z a-z 0-9 _ . -".into()));
        }
        let digest = parse_sha256(&k.sha256)
            .ok_or_else(|| at("`sha256` must be 64 hex characters (see `warden keygen`)".into()))?;
        if k.role != Role::Observer && k.namespaces.is_empty() {
            return Err(at(
                "`namespaces` is empty: list the resources it may lock, e.g. [\"orders:*\"]".into(),
            ));
        }
        if let Some(bad) = k
            .namespaces
            .iter()
            .find(|n| n.is_empty() || n[..n.len() - 1].contains('*'))
        {
            return Err(at(format!(
                "namespace `{bad}`: give an exact resource or a prefix ending in a single `*`"
            )));
        }
        let principal = Arc::new(Principal {
            name: k.principal.clone(),
            role: k.role,
            namespaces: k.namespaces.clone(),
        });
        if keys.0.insert(digest, principal).is_some() {
            return Err(at("the same key is listed twice".into()));
        }
    }
    Ok(keys)
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::NamedTempFile, Result<Auth, AuthFileError>) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        let a = Auth::load(f.path());
        (f, a)
    }

    #[test]
    fn a_key_names_its_principal_and_nothing_else_does() {
        let (key, hash) = new_key();
        let (_f, auth) = file(&format!(
            "[[key]]\nprincipal = \"orders\"\nrole = \"client\"\nnamespaces = [\"orders:*\"]\nsha256 = \"{hash}\"\n"
        ));
        let auth = auth.expect("valid file");
        let p = auth.principal(&key).expect("known key");
        assert_eq!((p.name.as_str(), p.role), ("orders", Role::Client));
        assert!(p.may_lock("orders:42") && !p.may_lock("billing:1") && !p.may_lock("orders"));
        assert!(auth.principal(&hash).is_none(), "the stored hash is not a key");
        assert!(auth.principal("wdn_guess").is_none());
        assert!(!format!("{auth:?}").contains(&hash));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            (
                "[[key]]\nprincipal = \"a/b\"\nrole = \"client\"\nnamespaces = [\"x\"]\nsha256 = \"00\"",
                "principal",
            ),
            ("[[key]]\nprincipal = \"a\"\nrole = \"root\"\nsha256 = \"00\"", "root"),
            (
                "[[key]]\nprincipal = \"a\"\nrole = \"client\"\nsha256 = \"zz\"",
                "sha256",
            ),
            (
                &format!(
                    "[[key]]\nprincipal = \"a\"\nrole = \"client\"\nsha256 = \"{}\"",
                    "0".repeat(64)
                ),
                "namespaces",
            ),
            (
                &format!(
                    "[[key]]\nprincipal = \"a\"\nrole = \"admin\"\nnamespaces = [\"a*b*\"]\nsha256 = \"{}\"",
                    "0".repeat(64)
                ),
                "a*b*",
            ),
            (
                "[[key]]\nprincipal = \"a\"\nrole = \"client\"\npassword = \"x\"",
                "password",
            ),
        ] {
            let (_f, r) = file(text);
            let e = r.expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_bad_reload_keeps_the_keys_in_force() {
        let (key, hash) = new_key();
        let (f, auth) = file(&format!(
            "[[key]]\nprincipal = \"ops\"\nrole = \"observer\"\nsha256 = \"{hash}\"\n"
        ));
        let auth = auth.expect("valid");
        std::fs::write(f.path(), "[[key]]\nprincipal = 1").expect("overwrite");
        assert!(auth.reload().is_err());
        assert!(auth.principal(&key).is_some(), "a bad edit locked the key out");
        std::fs::write(f.path(), "").expect("empty the file");
        assert_eq!(auth.reload().expect("an empty file is valid"), 0);
        assert!(auth.principal(&key).is_none(), "a removed key still works");
    }
}

//! Random identifiers: lease tokens (128 bits from the OS-seeded CSPRNG) and waiter ids.

use rand::RngCore;

/// A fresh lease token: 128 random bits as 32 lowercase hex characters.
pub fn lock_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

/// A fresh waiter id: 96 random bits as 24 hex characters (not secret, only unique).
pub fn waiter_id() -> String {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The non-secret handle of a lease: `lh_` and the first 64 bits of the SHA-256 of its lock id, in hex.
///
/// Views that show someone else's lease (queues, held lists, events, logs) show this instead of the lock id:
/// it tells leases apart and names one for an admin's force-release, but cannot be turned back into the lock
/// id (that has at least 122 random bits) and authorises nothing. Every process computes the same handle.
///
/// ```
/// let h = warden::lease_handle("0123456789abcdef0123456789abcdef");
/// assert!(h.starts_with("lh_") && h.len() == 19);
/// assert_eq!(h, warden::lease_handle("0123456789abcdef0123456789abcdef"));
/// ```
pub fn lease_handle(lock_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(lock_id.as_bytes());
    format!("lh_{}", hex(&digest[..8]))
}

/// Whether `s` has the shape of a lease handle.
pub fn is_lease_handle(s: &str) -> bool {
    s.len() == 19 && s.starts_with("lh_") && s[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

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

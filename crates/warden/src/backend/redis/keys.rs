//! Where a lock's keys live: every key of a resource sits in the Redis Cluster hash slot of its lock key.
//!
//! The lock key is `prefix + resource` (so `SET key token NX PX` clients on the same name exclude us). Every
//! other key starts with `{T}\x01`, where `T` is a three-character tag whose slot is the lock key's slot (one
//! precomputed tag per slot) and `\x01` is a byte no resource name may contain (names are validated free of
//! control characters): no resource name can ever reach an internal key. Lock ids start with the same tag,
//! so release, renew and status find the lease's keys without any global lookup.
//!
//! The tag table and CRC16 are written here because they are 30 lines and redis-rs keeps its slot
//! function private to its cluster feature.

/// Number of hash slots in Redis Cluster.
pub const SLOTS: u16 = 16384;
/// Length of a slot tag (and of the prefix it forms on a lock id).
pub const TAG_LEN: usize = 3;
const ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

/// CRC16/XMODEM of one byte, for every byte value.
const CRC_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter()
        .fold(0u16, |crc, &b| (crc << 8) ^ CRC_TABLE[((crc >> 8) as u8 ^ b) as usize])
}

/// The hash slot of `key`, honouring a `{tag}` (the first `{` and the first `}` after it, if non-empty).
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|o| {
            let rest = &key[o + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&c| c > 0)
                .map(|c| &rest[..c])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

const fn crc16_const(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    let mut i = 0;
    while i < data.len() {
        crc = (crc << 8) ^ CRC_TABLE[((crc >> 8) as u8 ^ data[i]) as usize];
        i += 1;
    }
    crc
}

/// One three-character tag per slot, from the lock-id alphabet (`[0-9A-Za-z_-]`, no braces), computed at
/// build time: the first of the 262,144 candidates that hashes to each slot (every slot has one, checked by
/// a unit test).
#[allow(long_running_const_eval)]
static TAGS: [[u8; TAG_LEN]; SLOTS as usize] = {
    let mut table = [[0u8; TAG_LEN]; SLOTS as usize];
    let mut filled = [false; SLOTS as usize];
    let mut n = 0;
    while n < 64 * 64 * 64 {
        let t = [ALPHABET[n / 4096], ALPHABET[(n / 64) % 64], ALPHABET[n % 64]];
        let s = (crc16_const(&t) % SLOTS) as usize;
        if !filled[s] {
            filled[s] = true;
            table[s] = t;
        }
        n += 1;
    }
    table
};

fn tags() -> &'static [[u8; TAG_LEN]] {
    &TAGS
}

/// The tag of a slot.
pub fn tag_of_slot(slot: u16) -> &'static str {
    let t = &tags()[(slot % SLOTS) as usize];
    // The alphabet is ASCII, so this cannot fail.
    std::str::from_utf8(t).unwrap_or("000")
}

/// The tag of the slot of a lock key.
pub fn tag_for(lock_key: &str) -> &'static str {
    tag_of_slot(slot(lock_key.as_bytes()))
}

/// The tag a lock id carries (its first three characters), if it has the shape of one.
pub fn tag_of_lock_id(lock_id: &str) -> Option<&str> {
    lock_id
        .get(..TAG_LEN)
        .filter(|t| t.bytes().all(|b| ALPHABET.contains(&b)) && lock_id.len() > TAG_LEN + 16)
}

/// A fresh lock id for a resource whose lock key is `lock_key`: its slot tag, then 128 random bits.
pub fn new_lock_id(lock_key: &str) -> String {
    format!("{}{}", tag_for(lock_key), crate::token::lock_id())
}

/// The internal keys of one resource (as the scripts build them; used by tests and tools).
pub fn internal_keys(lock_key: &str) -> [String; 3] {
    let t = tag_for(lock_key);
    [
        format!("{{{t}}}\x01f{lock_key}"),
        format!("{{{t}}}\x01q{lock_key}"),
        format!("{{{t}}}\x01w{lock_key}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis_cluster() {
        // The check value of CRC16/XMODEM, and slots Redis documents.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
    }

    #[test]
    fn every_slot_has_a_tag_in_that_slot() {
        for s in 0..SLOTS {
            let t = tag_of_slot(s);
            assert_eq!(slot(t.as_bytes()), s, "tag {t}");
            assert_eq!(slot(format!("{{{t}}}\x01fwhatever{{x}}").as_bytes()), s);
        }
    }

    #[test]
    fn lock_ids_carry_their_resource_slot() {
        for key in ["orders:1", "{user7}:cart", "app:{user7}:cart", "{}x", "a{b"] {
            let id = new_lock_id(key);
            assert!(crate::validate::lock_id(&id).is_ok(), "{id}");
            assert_eq!(slot(tag_of_lock_id(&id).unwrap().as_bytes()), slot(key.as_bytes()));
            for k in internal_keys(key) {
                assert_eq!(slot(k.as_bytes()), slot(key.as_bytes()), "{k:?}");
            }
        }
    }
}

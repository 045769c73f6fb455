//! The leader block: who leads the counter's replicas, in the lock file after the count's
//! record (SPEC §3).
//!
//! With leader mode on (SPEC §2 `ADVERTISE_ADDR`), the replica whose writer holds the counter's
//! lock keeps it while it is healthy and does every durable write; the others forward their
//! batches to it ([`crate::leadership`]). They find it here: two checksummed slots at 8 KiB and
//! 12 KiB, written in place through the locked descriptor like the record's, the leader's
//! address, its *epoch* (the record's sequence number of its takeover write: it grows with every
//! holder, a fencing token in the sense of Chubby's sequencer), a heartbeat the leader moves
//! every [`crate::leadership::HEARTBEAT`] and a random token the other replicas must present.
//!
//! The count's record, at 0 and 4 KiB, is unchanged: readers, `counter set` and replicas of the
//! previous releases read only that (they grow a file shorter than 8 KiB and read its first two
//! slots), so the block is invisible to them. A torn block costs nothing durable: the other slot
//! still names a leader (perhaps an older one, whom a forward then finds not leading), and the
//! next heartbeat rewrites it.

use std::{fmt, net::SocketAddr};

use crate::record::crc32c;

/// Where the block's two slots start: after the record's two 4 KiB slots.
pub const OFFSET: u64 = 8192;

/// Bytes between the two slots, as the record's: one write never spans two blocks of a disk.
pub const STRIDE: u64 = 4096;

/// The region the two slots live in, read in one aligned read past a network client's caches.
pub const REGION_BYTES: usize = 2 * STRIDE as usize;

/// The bytes of one slot: magic 8, epoch 8, heartbeat 8, state 1, address length 1, address 64,
/// token 16, CRC-32C 4; the rest zero.
pub const SLOT_BYTES: usize = 128;

const MAGIC: &[u8; 8] = b"ppleader";
const ADDRESS_AT: usize = 26;
const ADDRESS_MAX: usize = 64;
const TOKEN_AT: usize = ADDRESS_AT + ADDRESS_MAX;
const CRC_AT: usize = TOKEN_AT + 16;

/// A secret of 128 random bits, new each epoch: an internal request must carry the current
/// one. Compared in constant time; never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token(pub [u8; 16]);

impl Token {
    /// 16 bytes from the kernel's random source.
    pub fn random() -> std::io::Result<Token> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Token(bytes))
    }

    /// Lowercase hex, as sent in `x-pingpong-token`.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `hex` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, hex: &[u8]) -> bool {
        if hex.len() != 32 {
            return false;
        }
        let mut diff = 0u8;
        for (i, byte) in self.0.iter().enumerate() {
            let (Some(high), Some(low)) = (nibble(hex[2 * i]), nibble(hex[2 * i + 1])) else {
                return false;
            };
            diff |= byte ^ (high << 4 | low);
        }
        diff == 0
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// What a leader says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderBlock {
    /// The record's sequence number of the takeover write.
    pub epoch: u64,
    /// Moved by the leader every [`crate::leadership::HEARTBEAT`]: a block that stops moving is
    /// a leader that stopped (frozen, or cut off from the volume).
    pub heartbeat: u64,
    /// Where the leader's internal endpoint listens.
    pub address: SocketAddr,
    pub token: Token,
    /// The leader gave the lock back for good (it is stopping): nobody leads until another
    /// replica takes the lock.
    pub stepped_down: bool,
}

impl LeaderBlock {
    pub fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut bytes = [0u8; SLOT_BYTES];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.heartbeat.to_le_bytes());
        bytes[24] = if self.stepped_down { 2 } else { 1 };
        let address = self.address.to_string();
        // An IPv6 address with its port is at most 47 characters.
        let len = address.len().min(ADDRESS_MAX);
        bytes[25] = len as u8;
        bytes[ADDRESS_AT..ADDRESS_AT + len].copy_from_slice(&address.as_bytes()[..len]);
        bytes[TOKEN_AT..CRC_AT].copy_from_slice(&self.token.0);
        let crc = crc32c(&bytes[..CRC_AT]);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// `None` for an empty, torn or foreign slot.
    pub fn decode(bytes: &[u8]) -> Option<LeaderBlock> {
        let bytes = bytes.get(..SLOT_BYTES)?;
        if &bytes[..8] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(bytes[CRC_AT..CRC_AT + 4].try_into().ok()?);
        if crc != crc32c(&bytes[..CRC_AT]) {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let len = usize::from(bytes[25]).min(ADDRESS_MAX);
        let address = std::str::from_utf8(&bytes[ADDRESS_AT..ADDRESS_AT + len])
            .ok()?
            .parse()
            .ok()?;
        Some(LeaderBlock {
            epoch: u64_at(8),
            heartbeat: u64_at(16),
            stepped_down: bytes[24] == 2,
            address,
            token: Token(bytes[TOKEN_AT..CRC_AT].try_into().expect("16")),
        })
    }

    /// The offset of slot `i`.
    pub fn offset(i: usize) -> u64 {
        OFFSET + i as u64 * STRIDE
    }
}

/// The latest valid block of the region read from [`OFFSET`] on (a short read: short slots),
/// and the slot to write next (never the latest's).
pub fn latest(region: &[u8]) -> (Option<LeaderBlock>, usize) {
    let slot = |i: usize| {
        let start = (i * STRIDE as usize).min(region.len());
        LeaderBlock::decode(&region[start..])
    };
    match (slot(0), slot(1)) {
        (Some(a), Some(b)) if (b.epoch, b.heartbeat) > (a.epoch, a.heartbeat) => (Some(b), 0),
        (Some(a), _) => (Some(a), 1),
        (None, Some(b)) => (Some(b), 0),
        (None, None) => (None, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(epoch: u64, heartbeat: u64, address: &str) -> LeaderBlock {
        LeaderBlock {
            epoch,
            heartbeat,
            address: address.parse().unwrap(),
            token: Token([7; 16]),
            stepped_down: false,
        }
    }

    fn region(slots: [Option<[u8; SLOT_BYTES]>; 2]) -> Vec<u8> {
        let mut region = vec![0u8; REGION_BYTES];
        for (i, slot) in slots.iter().enumerate() {
            if let Some(bytes) = slot {
                let at = i * STRIDE as usize;
                region[at..at + SLOT_BYTES].copy_from_slice(bytes);
            }
        }
        region
    }

    #[test]
    fn a_block_reads_back_as_written_with_an_ipv6_address_of_the_longest_form() {
        let long = block(9, 3, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
        assert_eq!(LeaderBlock::decode(&long.encode()), Some(long));
        let v4 = block(1, 0, "10.42.1.7:3001");
        assert_eq!(LeaderBlock::decode(&v4.encode()), Some(v4));
    }

    #[test]
    fn the_latest_is_the_highest_epoch_then_heartbeat_and_a_torn_slot_is_skipped() {
        let old = block(5, 90, "10.0.0.1:3001").encode();
        let new = block(6, 0, "10.0.0.2:3001").encode();
        assert_eq!(latest(&region([Some(old), Some(new)])).0.unwrap().epoch, 6);
        assert_eq!(
            latest(&region([Some(new), Some(old)])),
            (Some(block(6, 0, "10.0.0.2:3001")), 1)
        );
        let mut torn = new;
        torn[40] ^= 1;
        assert_eq!(latest(&region([Some(old), Some(torn)])).0.unwrap().epoch, 5);
        assert_eq!(latest(&region([None, None])), (None, 0));
        assert_eq!(latest(&[]), (None, 0), "a lock file of 8 KiB has no block");
    }

    #[test]
    fn a_token_matches_only_its_own_lowercase_hex() {
        let token = Token([0xab; 16]);
        assert!(token.matches(token.hex().as_bytes()));
        assert!(!token.matches(token.hex().to_uppercase().as_bytes()));
        assert!(!token.matches(&token.hex().as_bytes()[..31]));
        assert!(!token.matches(Token([0xac; 16]).hex().as_bytes()));
        assert!(!token.matches(b"zz"));
        assert_eq!(format!("{token:?}"), "Token(..)", "never printed");
    }
}

//! The durable record: the count written in place, in two checksummed slots, so that one
//! `pwrite` and one `fdatasync` make an increment durable (SPEC §3).
//!
//! Replacing `pingpong_counter.txt` costs a temporary file, two fsyncs and a rename, about four
//! times what an in-place overwrite of a few bytes and one `fdatasync` costs. An in-place
//! overwrite can be torn by a power cut, though: a prefix of it, or some of its sectors, may
//! reach the disk and the rest not. So the record is the scheme of LMDB's meta pages and ZFS's
//! uberblocks: two slots, each holding a sequence number, the count and a CRC-32C; a write goes
//! to the slot that does *not* hold the latest valid record, and a reader takes the valid slot
//! with the highest sequence number. A torn write spoils only the slot being written, whose
//! checksum then fails; the other slot still holds the previous durable record.
//!
//! Layout of the file (the lock file, `pingpong_counter.txt.lock`): slot 0 at offset 0, slot 1
//! at offset [`SLOT_STRIDE`] (4 KiB). Each slot is [`RECORD_BYTES`] bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `b"pingpong"` |
//! | 8..16 | sequence number, u64 little-endian, one more than the record it replaces |
//! | 16..24 | the count, u64 little-endian |
//! | 24..28 | reserved, zero |
//! | 28..32 | CRC-32C of bytes 0..28, little-endian |
//!
//! What this assumes of the disk, and no more: a write that completes and is followed by a
//! successful `fdatasync` is durable; a write interrupted by a power cut may leave its slot as
//! any mix of old and new bytes (a prefix, or any subset of its sectors), *but leaves the other
//! slot alone*. The slots are 4 KiB apart, a filesystem block and a physical sector apart on
//! every common disk (512e drives write 4 KiB physical sectors, ext4 writes back whole 4 KiB
//! blocks), so writing one never rewrites the other. Sectors need not be written atomically.
//! A torn slot is taken for a value only if its CRC-32C matches by chance: 1 in 2^32.
//!
//! All zeros is an empty slot (a lock file from a release before the record, or one just
//! created): no record yet. A slot that is neither empty nor valid is torn. Two torn slots
//! cannot come from this module's writes (it writes one slot at a time and never the only
//! valid one), so they are [`Slots::latest`]'s `Err`: something else wrote the file.

use std::{fs::File, io, os::unix::fs::FileExt};

/// The bytes of one record.
pub const RECORD_BYTES: usize = 32;

/// The distance between the two slots: a 4 KiB block, so that no disk or filesystem write of
/// one slot rewrites the other.
pub const SLOT_STRIDE: u64 = 4096;

/// The size the file is given ([`allocate`]): both slots' blocks, whole.
pub const FILE_BYTES: u64 = 2 * SLOT_STRIDE;

const MAGIC: &[u8; 8] = b"pingpong";

/// One record: the count, and its place in the sequence of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// One more than the sequence number of the record this one replaced; 1 for the first.
    pub seq: u64,
    /// The count: the number of increments made so far.
    pub value: u64,
}

impl Record {
    /// The bytes of the record in a slot.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut bytes = [0u8; RECORD_BYTES];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&self.seq.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.value.to_le_bytes());
        let crc = crc32c(&bytes[..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// What the bytes of one slot hold. Missing bytes (a short file) read as zeros.
    pub fn decode(bytes: &[u8]) -> Slot {
        let mut slot = [0u8; RECORD_BYTES];
        let n = bytes.len().min(RECORD_BYTES);
        slot[..n].copy_from_slice(&bytes[..n]);
        if slot == [0u8; RECORD_BYTES] {
            return Slot::Empty;
        }
        let crc = u32::from_le_bytes(slot[28..32].try_into().expect("4 bytes"));
        if &slot[0..8] != MAGIC || slot[24..28] != [0; 4] || crc != crc32c(&slot[..28]) {
            return Slot::Torn;
        }
        Slot::Valid(Record {
            seq: u64::from_le_bytes(slot[8..16].try_into().expect("8 bytes")),
            value: u64::from_le_bytes(slot[16..24].try_into().expect("8 bytes")),
        })
    }
}

/// What one slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// All zeros: never written.
    Empty,
    /// A record whose checksum holds.
    Valid(Record),
    /// Neither: a write to it was cut short (or something else wrote there).
    Torn,
}

/// Both slots of a record file, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots(pub [Slot; 2]);

/// The latest valid record and where it is, which decides where the next write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    /// The valid record with the highest sequence number, if any.
    pub record: Option<Record>,
    /// The slot the next write must go to: never the one holding `record`.
    pub next_slot: usize,
}

/// Two torn slots: the file holds something this module never writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BothTorn;

impl Slots {
    /// The latest valid record, or none yet; `Err` when both slots are torn.
    pub fn latest(&self) -> Result<Latest, BothTorn> {
        let valid = |i: usize| match self.0[i] {
            Slot::Valid(record) => Some(record),
            _ => None,
        };
        match (valid(0), valid(1)) {
            (Some(a), Some(b)) if b.seq > a.seq => Ok(Latest::at(b, 1)),
            (Some(a), _) => Ok(Latest::at(a, 0)),
            (None, Some(b)) => Ok(Latest::at(b, 1)),
            (None, None) => match self.0 {
                [Slot::Torn, Slot::Torn] => Err(BothTorn),
                // Rewrite a torn slot rather than the empty one, so that two torn slots can
                // never arise from writes cut short one after the other.
                [_, Slot::Torn] => Ok(Latest {
                    record: None,
                    next_slot: 1,
                }),
                _ => Ok(Latest {
                    record: None,
                    next_slot: 0,
                }),
            },
        }
    }

    /// Whether a slot is torn: after a power cut, expected for at most one slot.
    pub fn torn(&self) -> bool {
        self.0.contains(&Slot::Torn)
    }
}

impl Latest {
    fn at(record: Record, slot: usize) -> Latest {
        Latest {
            record: Some(record),
            next_slot: 1 - slot,
        }
    }
}

/// The offset of slot `i`.
pub fn slot_offset(i: usize) -> u64 {
    i as u64 * SLOT_STRIDE
}

/// Reads both slots of `file` (a short or empty file reads as empty slots).
pub fn read_slots(file: &File) -> io::Result<Slots> {
    let mut slots = [Slot::Empty; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        let mut bytes = [0u8; RECORD_BYTES];
        let n = read_at_most(file, &mut bytes, slot_offset(i))?;
        *slot = Record::decode(&bytes[..n]);
    }
    Ok(Slots(slots))
}

/// Both slots from the file's first bytes, as read in one go (a short read, short slots).
pub fn decode_slots(file: &[u8]) -> Slots {
    let slot = |i: usize| {
        let start = (slot_offset(i) as usize).min(file.len());
        let end = (start + RECORD_BYTES).min(file.len());
        Record::decode(&file[start..end])
    };
    Slots([slot(0), slot(1)])
}

/// Gives `file` its full size with zeros (empty slots), durably, if it is shorter; true if it
/// did. From then on a record write overwrites blocks the file already has, so it needs no
/// free space (a full volume does not stop increments) and changes no metadata. What is there
/// is kept. The file's *name* is the caller's to make durable.
pub fn allocate(file: &File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len >= FILE_BYTES {
        return Ok(false);
    }
    let zeros = vec![0u8; (FILE_BYTES - len) as usize];
    file.write_all_at(&zeros, len)?;
    file.sync_data()?;
    Ok(true)
}

/// Writes `record` into slot `i` of `file` in place. Not durable until `file.sync_data()`.
pub fn write_slot(file: &File, i: usize, record: &Record) -> io::Result<()> {
    file.write_all_at(&record.encode(), slot_offset(i))
}

/// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// CRC-32C (Castagnoli), the checksum of ext4's and btrfs's metadata, bitwise-reflected with
/// the polynomial 0x82F63B78. A table of 256 entries built at compile time.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The check value of CRC-32C (RFC 3720, appendix B.4): "123456789" -> 0xE3069283.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn a_record_round_trips_and_zeros_are_empty() {
        let record = Record { seq: 7, value: 42 };
        assert_eq!(Record::decode(&record.encode()), Slot::Valid(record));
        assert_eq!(Record::decode(&[0u8; RECORD_BYTES]), Slot::Empty);
        assert_eq!(Record::decode(&[]), Slot::Empty);
    }

    #[test]
    fn every_torn_prefix_and_every_flipped_bit_is_detected() {
        let old = Record { seq: 7, value: 99 }.encode();
        let new = Record { seq: 9, value: 100 }.encode();
        for cut in 1..RECORD_BYTES {
            let mut torn = old;
            torn[..cut].copy_from_slice(&new[..cut]);
            let decoded = Record::decode(&torn);
            // A prefix that changes nothing the checksum covers leaves the old record whole.
            if torn == old {
                assert_eq!(decoded, Slot::Valid(Record { seq: 7, value: 99 }));
            } else {
                assert_eq!(decoded, Slot::Torn, "a prefix of {cut} bytes");
            }
        }
        for bit in 0..RECORD_BYTES * 8 {
            let mut flipped = new;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Record::decode(&flipped), Slot::Torn, "bit {bit}");
        }
    }

    #[test]
    fn the_latest_is_the_highest_valid_and_the_next_write_never_overwrites_it() {
        let r = |seq| {
            Slot::Valid(Record {
                seq,
                value: seq * 10,
            })
        };
        let latest = |a, b| Slots([a, b]).latest();
        assert_eq!(
            latest(r(4), r(5)),
            Ok(Latest {
                record: Some(Record { seq: 5, value: 50 }),
                next_slot: 0
            })
        );
        assert_eq!(
            latest(r(6), r(5)),
            Ok(Latest {
                record: Some(Record { seq: 6, value: 60 }),
                next_slot: 1
            })
        );
        assert_eq!(latest(Slot::Torn, r(5)).map(|l| l.next_slot), Ok(0));
        assert_eq!(latest(r(4), Slot::Torn).map(|l| l.next_slot), Ok(1));
        assert_eq!(
            latest(Slot::Empty, Slot::Empty),
            Ok(Latest {
                record: None,
                next_slot: 0
            })
        );
        assert_eq!(latest(Slot::Torn, Slot::Empty).map(|l| l.next_slot), Ok(0));
        assert_eq!(latest(Slot::Empty, Slot::Torn).map(|l| l.next_slot), Ok(1));
        assert_eq!(latest(Slot::Torn, Slot::Torn), Err(BothTorn));
    }

    #[test]
    fn slots_live_in_separate_blocks_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("lock"))
            .unwrap();
        assert_eq!(
            read_slots(&file).unwrap(),
            Slots([Slot::Empty, Slot::Empty])
        );
        write_slot(&file, 1, &Record { seq: 1, value: 3 }).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            SLOT_STRIDE + RECORD_BYTES as u64
        );
        write_slot(&file, 0, &Record { seq: 2, value: 4 }).unwrap();
        let slots = read_slots(&file).unwrap();
        assert_eq!(
            slots.latest().unwrap().record,
            Some(Record { seq: 2, value: 4 })
        );
        assert_eq!(slots.0[1], Slot::Valid(Record { seq: 1, value: 3 }));
        let mut bytes = vec![0u8; FILE_BYTES as usize];
        let n = file.read_at(&mut bytes, 0).unwrap();
        assert_eq!(decode_slots(&bytes[..n]), slots);
        assert_eq!(decode_slots(&bytes[..100]).0[1], Slot::Empty);
    }
}

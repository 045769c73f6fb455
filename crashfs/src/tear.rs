//! Torn writes: what a power cut may keep of a change to a file that no `fsync`/`fdatasync`
//! covered yet, and every way it can, for the enumeration.
//!
//! The model, per pending [`Change`] (each independently, applied in the order they were made):
//!
//! - a **write** keeps nothing ([`Tear::Lost`]), all of it ([`Tear::Whole`]), a prefix or a
//!   suffix of it at byte granularity ([`Tear::Prefix`], [`Tear::Suffix`]), or any subset of the
//!   512-byte sectors it touches, each of them whole ([`Tear::Sectors`]);
//! - a **truncation** is kept or not ([`Tear::Lost`], [`Tear::Whole`]).
//!
//! Why these: a page cache writes dirty pages back in any order and a disk writes the sectors
//! of one request in any order, so any subset of sectors; inside one sector, a disk without
//! power-loss protection may stop part-way, and SQLite's assumption ("a sector write is linear":
//! from one end towards the other, so a cut leaves the first or the last bytes changed) is the
//! one the prefix and suffix encode. Because each pending change is torn independently and
//! applied in order, a sector written twice before a sync can end in either version (or the one
//! before both): writeback reordering is covered too.
//!
//! Bytes *outside* the write are never touched, even in a sector it shares (SQLite calls this
//! "powersafe overwrite"); a disk that garbles a whole sector when a write to part of it is cut
//! is not modelled. A file's size follows what was kept: it grows to the end of the last kept
//! byte (a gap left by a lost earlier part reads as the old bytes, or zeros past the old end).
//!
//! [`Change::tears`] is the enumeration: exhaustive for a write within one sector (byte
//! prefixes and suffixes: 2 + 2·(len − 1) outcomes, fewer once equal results are merged), every
//! subset of sectors for a write of up to [`SUBSET_SECTORS`] sectors, and the sector-granular
//! prefixes and suffixes beyond. [`Change::draw`] picks one tear at random from the whole model
//! (byte prefixes of long writes included), for seeded random cuts.

use std::ops::Range;

/// The unit a disk writes, and the unit the model tears at above byte granularity.
pub const SECTOR: u64 = 512;

/// Up to this many sectors, [`Change::tears`] lists every subset of a write's sectors (2^8 =
/// 256 at most: one 4 KiB page); beyond, only the sector prefixes and suffixes.
pub const SUBSET_SECTORS: u64 = 8;

/// The most sectors [`Tear::Sectors`] can name (one bit each).
pub const MASK_SECTORS: u64 = 64;

/// A change to a file's data not yet covered by a sync of that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// `len` bytes written at `offset`.
    Write { offset: u64, len: u64 },
    /// The file's size set to `size`.
    Truncate { size: u64 },
}

/// What of one pending [`Change`] reached the disk when the power failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tear {
    /// None of it.
    Lost,
    /// All of it.
    Whole,
    /// The first `n` bytes of a write, `0 < n < len`.
    Prefix(u64),
    /// The last `n` bytes of a write, `0 < n < len`.
    Suffix(u64),
    /// Exactly these of the sectors a write touches, each whole: bit `i` is its `i`-th sector,
    /// counted from the one holding its first byte (at most [`MASK_SECTORS`]).
    Sectors(u64),
}

impl Change {
    /// The 512-byte sectors of the file a write touches (a truncation: none).
    pub fn sectors(&self) -> u64 {
        match *self {
            Change::Write { len: 0, .. } | Change::Truncate { .. } => 0,
            Change::Write { offset, len } => (offset + len - 1) / SECTOR - offset / SECTOR + 1,
        }
    }

    /// Whether `tear` is something a cut can do to this change.
    pub fn admits(&self, tear: Tear) -> bool {
        match (*self, tear) {
            (_, Tear::Lost | Tear::Whole) => true,
            (Change::Truncate { .. }, _) => false,
            (Change::Write { len, .. }, Tear::Prefix(n) | Tear::Suffix(n)) => 0 < n && n < len,
            (Change::Write { .. }, Tear::Sectors(mask)) => {
                let sectors = self.sectors();
                sectors <= MASK_SECTORS && (sectors == MASK_SECTORS || mask >> sectors == 0)
            }
        }
    }

    /// The byte ranges of a write that `tear` keeps, relative to its offset, in order.
    fn kept(&self, tear: Tear) -> Vec<Range<u64>> {
        let Change::Write { offset, len } = *self else {
            return Vec::new();
        };
        match tear {
            Tear::Lost => Vec::new(),
            Tear::Whole => std::iter::once(0..len).collect(),
            Tear::Prefix(n) => std::iter::once(0..n).collect(),
            Tear::Suffix(n) => std::iter::once(len - n..len).collect(),
            Tear::Sectors(mask) => {
                let first = offset / SECTOR;
                (0..self.sectors())
                    .filter(|i| mask >> i & 1 == 1)
                    .map(|i| {
                        let start = ((first + i) * SECTOR).max(offset) - offset;
                        let end = ((first + i + 1) * SECTOR).min(offset + len) - offset;
                        start..end
                    })
                    .collect()
            }
        }
    }

    /// Every tear the enumeration tries, without two that keep the same bytes; `Lost` and
    /// `Whole` first. See the module docs for what is exhaustive.
    pub fn tears(&self) -> Vec<Tear> {
        let Change::Write { offset, len } = *self else {
            return vec![Tear::Lost, Tear::Whole];
        };
        let sectors = self.sectors();
        let mut all = vec![Tear::Lost, Tear::Whole];
        if len <= SECTOR {
            all.extend((1..len).map(Tear::Prefix));
            all.extend((1..len).map(Tear::Suffix));
        }
        if (2..=SUBSET_SECTORS).contains(&sectors) {
            all.extend((1..(1u64 << sectors) - 1).map(Tear::Sectors));
        } else if sectors > SUBSET_SECTORS {
            // The sector boundaries inside the write, relative to its start.
            let boundaries = (1..sectors).map(|i| (offset / SECTOR + i) * SECTOR - offset);
            all.extend(boundaries.clone().map(Tear::Prefix));
            all.extend(boundaries.map(|b| Tear::Suffix(len - b)));
        }
        let mut seen = std::collections::HashSet::new();
        all.retain(|&t| seen.insert(self.kept(t)));
        all
    }

    /// One tear drawn from the whole model: lost or whole a quarter of the time each, else a
    /// byte prefix, a byte suffix or a subset of sectors.
    pub fn draw(&self, rng: &mut fastrand::Rng) -> Tear {
        let len = match *self {
            Change::Write { len, .. } if len >= 2 => len,
            _ => return if rng.bool() { Tear::Lost } else { Tear::Whole },
        };
        let sectors = self.sectors();
        match rng.u8(0..4) {
            0 => Tear::Lost,
            1 => Tear::Whole,
            _ if (2..=MASK_SECTORS).contains(&sectors) && rng.u8(0..3) == 0 => {
                let full = if sectors == MASK_SECTORS {
                    u64::MAX
                } else {
                    (1 << sectors) - 1
                };
                Tear::Sectors(rng.u64(1..full))
            }
            _ if rng.bool() => Tear::Prefix(rng.u64(1..len)),
            _ => Tear::Suffix(rng.u64(1..len)),
        }
    }
}

/// Applies what `tear` keeps of `change` (whose bytes, for a write, are `bytes`) to `image`,
/// the file's durable data.
pub(crate) fn apply(image: &mut Vec<u8>, change: Change, bytes: &[u8], tear: Tear) {
    match change {
        Change::Truncate { size } => {
            if tear == Tear::Whole {
                image.resize(usize::try_from(size).expect("a size in memory"), 0);
            }
        }
        Change::Write { offset, .. } => {
            for range in change.kept(tear) {
                let start = usize::try_from(offset + range.start).expect("in memory");
                let end = usize::try_from(offset + range.end).expect("in memory");
                if image.len() < end {
                    image.resize(end, 0);
                }
                let (from, to) = (range.start as usize, range.end as usize);
                image[start..end].copy_from_slice(&bytes[from..to]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(offset: u64, len: u64) -> Change {
        Change::Write { offset, len }
    }

    fn torn(old: &[u8], offset: u64, new: &[u8], tear: Tear) -> Vec<u8> {
        let mut image = old.to_vec();
        apply(&mut image, write(offset, new.len() as u64), new, tear);
        image
    }

    #[test]
    fn sectors_counts_every_sector_a_write_touches() {
        assert_eq!(write(0, 32).sectors(), 1);
        assert_eq!(write(4096, 32).sectors(), 1);
        assert_eq!(write(500, 32).sectors(), 2);
        assert_eq!(write(0, 512).sectors(), 1);
        assert_eq!(write(0, 513).sectors(), 2);
        assert_eq!(write(511, 1026).sectors(), 4);
        assert_eq!(write(7, 0).sectors(), 0);
        assert_eq!(Change::Truncate { size: 9 }.sectors(), 0);
    }

    #[test]
    fn a_small_write_tears_at_every_byte_from_either_end() {
        assert_eq!(
            write(0, 3).tears(),
            [
                Tear::Lost,
                Tear::Whole,
                Tear::Prefix(1),
                Tear::Prefix(2),
                Tear::Suffix(1),
                Tear::Suffix(2),
            ]
        );
        // A record: 2 + 31 + 31.
        assert_eq!(write(4096, 32).tears().len(), 64);
        assert_eq!(torn(b"9\n", 0, b"10\n", Tear::Prefix(1)), b"1\n");
        assert_eq!(torn(b"9\n", 0, b"10\n", Tear::Suffix(2)), b"90\n");
        assert_eq!(torn(b"9\n", 0, b"10\n", Tear::Lost), b"9\n");
        assert_eq!(torn(b"9\n", 0, b"10\n", Tear::Whole), b"10\n");
    }

    #[test]
    fn a_write_across_a_boundary_also_loses_either_sector_alone() {
        // 12 bytes in sector 0, 20 in sector 1: Sectors(0b01) keeps what Prefix(12) keeps and
        // is merged with it; so is Sectors(0b10) with Suffix(20).
        let tears = write(500, 32).tears();
        assert_eq!(tears.len(), 64);
        assert!(!tears.iter().any(|t| matches!(t, Tear::Sectors(_))));
        assert_eq!(
            torn(&[1; 600], 500, &[2; 32], Tear::Sectors(0b10))[495..535],
            [[1; 17].as_slice(), &[2; 20], &[1; 3]].concat()
        );
    }

    #[test]
    fn a_page_tears_into_every_subset_of_its_sectors() {
        let tears = write(0, 4096).tears();
        // Lost, Whole, and the 254 other subsets of 8 sectors.
        assert_eq!(tears.len(), 256);
        let new: Vec<u8> = (0..4096u32).map(|i| (i / 512 + 1) as u8).collect();
        let kept = torn(&[0; 4096], 0, &new, Tear::Sectors(0b1010_0001));
        let per_sector: Vec<u8> = kept.chunks(512).map(|s| s[0]).collect();
        assert_eq!(per_sector, [1, 0, 0, 0, 0, 6, 0, 8]);
        assert!(kept.chunks(512).all(|s| s.iter().all(|&b| b == s[0])));
    }

    #[test]
    fn a_long_write_tears_at_sector_boundaries_from_either_end() {
        // 9 sectors: Lost, Whole, 8 prefixes, 8 suffixes.
        let tears = write(0, 9 * 512).tears();
        assert_eq!(tears.len(), 18);
        assert!(tears.contains(&Tear::Prefix(512)));
        assert!(tears.contains(&Tear::Suffix(8 * 512)));
        // Unaligned: the boundaries are the file's sectors, not the write's.
        let tears = write(100, 9 * 512).tears();
        assert!(tears.contains(&Tear::Prefix(412)));
        assert!(tears.contains(&Tear::Suffix(100)));
    }

    #[test]
    fn a_kept_part_past_the_end_grows_the_file_with_zeros_in_the_gap() {
        assert_eq!(torn(b"ab", 4, b"xyz", Tear::Suffix(1)), b"ab\0\0\0\0z");
        assert_eq!(torn(b"ab", 4, b"xyz", Tear::Prefix(1)), b"ab\0\0x");
        assert_eq!(torn(b"ab", 4, b"xyz", Tear::Lost), b"ab");
        let mut image = b"abc".to_vec();
        apply(&mut image, Change::Truncate { size: 1 }, &[], Tear::Lost);
        assert_eq!(image, b"abc");
        apply(&mut image, Change::Truncate { size: 1 }, &[], Tear::Whole);
        assert_eq!(image, b"a");
    }

    #[test]
    fn admits_only_what_the_change_can_do() {
        let w = write(0, 32);
        assert!(w.admits(Tear::Prefix(31)));
        assert!(!w.admits(Tear::Prefix(32)));
        assert!(!w.admits(Tear::Suffix(0)));
        assert!(w.admits(Tear::Sectors(0b1)));
        assert!(!w.admits(Tear::Sectors(0b10)));
        let t = Change::Truncate { size: 0 };
        assert!(t.admits(Tear::Whole));
        assert!(!t.admits(Tear::Prefix(1)));
    }

    #[test]
    fn draws_are_reproducible_and_always_admitted() {
        let changes = [
            write(0, 1),
            write(0, 32),
            write(500, 32),
            write(0, 4096),
            write(3, 64 * 512),
            write(0, 70 * 512),
            Change::Truncate { size: 0 },
        ];
        let draws = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..200)
                .flat_map(|_| changes.map(|c| c.draw(&mut rng)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        let all = draws(7);
        for (i, tear) in all.iter().enumerate() {
            assert!(changes[i % changes.len()].admits(*tear), "{tear:?}");
        }
        // Every kind of tear comes up.
        for kind in [
            Tear::Lost,
            Tear::Whole,
            Tear::Prefix(0),
            Tear::Suffix(0),
            Tear::Sectors(0),
        ] {
            let same = |t: &Tear| std::mem::discriminant(t) == std::mem::discriminant(&kind);
            assert!(all.iter().any(same), "{kind:?}");
        }
    }
}

//! End-to-end integrity: a full-object CRC computed while uploading, stored with
//! the object as user metadata (so it works on every S3 engine, not only AWS), and
//! verified on every whole-object download — also when the object arrives as
//! parallel ranges, by combining the ranges' CRCs in order.
//!
//! The CRCs come from `crc-fast` (SIMD, the crate the AWS SDK itself uses); its
//! `checksum_combine` joins the CRC of two adjacent byte runs without re-reading
//! them.

use std::collections::BTreeMap;

use crc_fast::{checksum_combine, CrcAlgorithm, Digest};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The full-object checksum stor stores with each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    /// CRC-64/NVME, S3's default full-object checksum (the default).
    #[default]
    Crc64nvme,
    /// CRC-32C (Castagnoli).
    Crc32c,
    /// CRC-32 (ISO-HDLC, zlib's), the default of the AWS SDKs and CLI.
    Crc32,
    /// No checksum is stored (downloads still verify objects that carry one).
    None,
}

impl ChecksumAlgorithm {
    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc64nvme => Some(CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::None => None,
        }
    }

    /// Lower-case name, as in the config and the metadata key.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc64nvme => "crc64nvme",
            ChecksumAlgorithm::Crc32c => "crc32c",
            ChecksumAlgorithm::Crc32 => "crc32",
            ChecksumAlgorithm::None => "none",
        }
    }

    /// The user-metadata key holding this checksum (`x-amz-meta-stor-crc64nvme`).
    pub fn metadata_key(self) -> String {
        format!("{META_PREFIX}{}", self.name())
    }

    fn width(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32c | ChecksumAlgorithm::Crc32 => 4,
            _ => 8,
        }
    }

    /// Whether `encoded` can be a checksum of this algorithm: base64 of exactly
    /// its width in bytes (engines have been seen sending other things).
    pub fn fits(self, encoded: &str) -> bool {
        self.crc().is_some()
            && aws_smithy_types::base64::decode(encoded.trim())
                .is_ok_and(|b| b.len() == self.width())
    }

    /// The checksum of `data` in one call.
    pub fn of(self, data: &[u8]) -> Option<Checksum> {
        let mut h = Hasher::new(self)?;
        h.update(data);
        Some(h.finish())
    }
}

/// Metadata keys stor reserves for its checksums.
pub const META_PREFIX: &str = "stor-";

/// Every algorithm stor computes, stores and verifies.
pub(crate) const STORED: [ChecksumAlgorithm; 3] = [
    ChecksumAlgorithm::Crc64nvme,
    ChecksumAlgorithm::Crc32c,
    ChecksumAlgorithm::Crc32,
];

/// A computed checksum of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The CRC value.
    pub value: u64,
    /// Bytes it covers.
    pub len: u64,
}

impl Checksum {
    /// Base64 of the big-endian CRC, the encoding of S3's `x-amz-checksum-*` headers.
    pub fn encoded(&self) -> String {
        let bytes = self.value.to_be_bytes();
        aws_smithy_types::base64::encode(&bytes[8 - self.algorithm.width()..])
    }

    /// `algorithm:base64`, as shown in results (`crc64nvme:AAAAAAAAAAA=`).
    pub fn label(&self) -> String {
        format!("{}:{}", self.algorithm.name(), self.encoded())
    }

    /// The checksum of these bytes followed by `next`'s.
    pub fn then(self, next: Checksum) -> Checksum {
        let algo = self.algorithm.crc().expect("a checksum has an algorithm");
        Checksum {
            algorithm: self.algorithm,
            value: checksum_combine(algo, self.value, next.value, next.len),
            len: self.len + next.len,
        }
    }

    /// Stores it in user metadata (replacing any stor checksum already there).
    pub fn store_in(&self, metadata: &mut BTreeMap<String, String>) {
        metadata.retain(|k, _| !is_reserved(k));
        metadata.insert(self.algorithm.metadata_key(), self.encoded());
    }
}

/// Whether a metadata key is one stor keeps its checksums under.
pub fn is_reserved(key: &str) -> bool {
    STORED
        .iter()
        .any(|a| key.eq_ignore_ascii_case(&a.metadata_key()))
}

/// The checksum an object's metadata says it has: algorithm and encoded value.
pub fn stored_in(metadata: &BTreeMap<String, String>) -> Option<(ChecksumAlgorithm, String)> {
    STORED.iter().find_map(|a| {
        let key = a.metadata_key();
        metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            .map(|(_, v)| (*a, v.trim().to_owned()))
    })
}

/// A running CRC over bytes fed in order.
#[derive(Clone)]
pub struct Hasher {
    algorithm: ChecksumAlgorithm,
    digest: Digest,
    len: u64,
}

impl Hasher {
    /// A hasher, or `None` for [`ChecksumAlgorithm::None`].
    pub fn new(algorithm: ChecksumAlgorithm) -> Option<Hasher> {
        Some(Hasher {
            algorithm,
            digest: Digest::new(algorithm.crc()?),
            len: 0,
        })
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
        self.len += data.len() as u64;
    }

    /// The checksum so far.
    pub fn finish(&self) -> Checksum {
        Checksum {
            algorithm: self.algorithm,
            value: self.digest.finalize(),
            len: self.len,
        }
    }
}

/// Running CRCs of the same bytes in several algorithms: one when the object's
/// checksum is known, all of [`STORED`] for bytes that arrive before it is known
/// (an S3-native checksum is learnt after the first range of a download).
#[derive(Clone)]
pub(crate) struct Hashers(Vec<Hasher>);

impl Hashers {
    /// Hashers for `algorithms`, or `None` when there is nothing to compute.
    pub fn new(algorithms: &[ChecksumAlgorithm]) -> Option<Hashers> {
        let v: Vec<Hasher> = algorithms.iter().filter_map(|a| Hasher::new(*a)).collect();
        (!v.is_empty()).then_some(Hashers(v))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.iter_mut().for_each(|h| h.update(data));
    }

    /// The checksum in `algorithm` of everything fed, if it was computed.
    pub fn finish(&self, algorithm: ChecksumAlgorithm) -> Option<Checksum> {
        let h = self.0.iter().find(|h| h.algorithm == algorithm)?;
        Some(h.finish())
    }
}

/// Checksums of ranges that arrived in any order, joined in offset order at the end.
#[derive(Default)]
pub(crate) struct RangeChecksums(std::sync::Mutex<Vec<(u64, Checksum)>>);

impl RangeChecksums {
    pub fn add(&self, start: u64, c: Checksum) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((start, c));
    }

    /// The whole object's checksum, if the ranges cover `0..size` without gaps.
    pub fn join(self, size: u64) -> Option<Checksum> {
        let mut v = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        v.sort_by_key(|(s, _)| *s);
        let mut at = 0;
        let mut acc: Option<Checksum> = None;
        for (start, c) in v {
            if start != at {
                return None;
            }
            at += c.len;
            acc = Some(match acc {
                None => c,
                Some(a) => a.then(c),
            });
        }
        (at == size).then_some(acc).flatten()
    }
}

/// Compares what arrived with what the object's metadata promised.
pub(crate) fn verify(expected: &(ChecksumAlgorithm, String), got: Option<Checksum>) -> Result<()> {
    let Some(got) = got else {
        return Err(Error::new(
            ErrorKind::Integrity,
            "the downloaded ranges did not cover the object",
        ));
    };
    if got.encoded() != expected.1 {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "the downloaded bytes do not match the object's {} checksum (stored {}, \
                 received {}) — download it again, and if it persists the stored object is \
                 damaged",
                expected.0.name().to_uppercase(),
                expected.1,
                got.encoded()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The check values of the catalogue of CRC parameters for "123456789".
        let c = ChecksumAlgorithm::Crc32c.of(b"123456789").unwrap();
        assert_eq!(c.value, 0xe306_9283);
        let c = ChecksumAlgorithm::Crc64nvme.of(b"123456789").unwrap();
        assert_eq!(c.value, 0xae8b_1486_0a79_9888);
        let c = ChecksumAlgorithm::Crc32.of(b"123456789").unwrap();
        assert_eq!(c.value, 0xcbf4_3926);
        assert!(ChecksumAlgorithm::None.of(b"x").is_none());
        assert!(ChecksumAlgorithm::Crc32.fits(&c.encoded()));
        assert!(
            !ChecksumAlgorithm::Crc64nvme.fits(&c.encoded()),
            "4 bytes, not 8"
        );
        assert!(!ChecksumAlgorithm::Crc32.fits("not base64!") && !ChecksumAlgorithm::None.fits(""));
        // S3's header encoding: base64 of the big-endian bytes.
        let empty = ChecksumAlgorithm::Crc64nvme.of(b"").unwrap();
        assert_eq!(empty.encoded(), "AAAAAAAAAAA=");
        assert_eq!(
            ChecksumAlgorithm::Crc32c
                .of(b"123456789")
                .unwrap()
                .encoded(),
            aws_smithy_types::base64::encode([0xe3, 0x06, 0x92, 0x83])
        );
    }

    #[test]
    fn ranges_in_any_order_combine_to_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for algo in STORED {
            let whole = algo.of(&data).unwrap();
            let r = RangeChecksums::default();
            for (a, b) in [(60_000, 100_000), (0, 1), (1, 60_000)] {
                r.add(a as u64, algo.of(&data[a..b]).unwrap());
            }
            assert_eq!(r.join(100_000), Some(whole));
            // A gap or a short cover is not a checksum.
            let r = RangeChecksums::default();
            r.add(0, algo.of(&data[..10]).unwrap());
            r.add(11, algo.of(&data[11..]).unwrap());
            assert_eq!(r.join(100_000), None);
        }
    }

    #[test]
    fn hashers_give_each_algorithms_checksum() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13 % 241) as u8).collect();
        let mut all = Hashers::new(&STORED).unwrap();
        let mut one = Hashers::new(&[ChecksumAlgorithm::Crc32c]).unwrap();
        for piece in data.chunks(7000) {
            all.update(piece);
            one.update(piece);
        }
        for algo in STORED {
            assert_eq!(all.finish(algo), algo.of(&data), "{}", algo.name());
        }
        assert_eq!(
            one.finish(ChecksumAlgorithm::Crc32c),
            ChecksumAlgorithm::Crc32c.of(&data)
        );
        assert_eq!(one.finish(ChecksumAlgorithm::Crc32), None, "not computed");
        assert!(Hashers::new(&[]).is_none() && Hashers::new(&[ChecksumAlgorithm::None]).is_none());
    }

    #[test]
    fn a_flipped_byte_fails_verification() {
        let mut data = vec![7u8; 4096];
        let c = ChecksumAlgorithm::Crc64nvme.of(&data).unwrap();
        let expected = (ChecksumAlgorithm::Crc64nvme, c.encoded());
        assert!(verify(&expected, Some(c)).is_ok());
        data[1000] ^= 1;
        let bad = ChecksumAlgorithm::Crc64nvme.of(&data).unwrap();
        let e = verify(&expected, Some(bad)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.to_string().contains("CRC64NVME"), "{e}");
    }

    #[test]
    fn metadata_round_trip() {
        let mut m = BTreeMap::new();
        m.insert("source".to_owned(), "crawler".to_owned());
        m.insert("Stor-CRC32C".to_owned(), "stale".to_owned());
        let c = ChecksumAlgorithm::Crc64nvme.of(b"abc").unwrap();
        c.store_in(&mut m);
        assert_eq!(m.len(), 2, "the stale checksum is replaced: {m:?}");
        assert_eq!(
            stored_in(&m),
            Some((ChecksumAlgorithm::Crc64nvme, c.encoded()))
        );
        assert!(is_reserved("stor-crc64nvme") && !is_reserved("source"));
    }
}

//! Signed releases: what `meshnode upgrade publish` signs and `upgrade
//! roll` installs (docs/guide.md, "Upgrading"; docs/protocol.md, "Releases
//! and version skew").
//!
//! A release names a version, the peer protocol its nodes speak and the
//! oldest one they still speak with, and one binary per CPU by its BLAKE3
//! hash, its size and its chunks (the store's 64 KiB chunks, so a node
//! fetches only the chunks it lacks). The user key signs it; a node
//! installs only a release signed by a key it trusts, and only the binary
//! whose bytes hash to what the release names.
//!
//! The version and protocol of a binary are read from the binary itself
//! (its release marker, [`read_marker`]) and its CPU from its ELF header
//! ([`Cpu::of_elf`]), so `publish` needs no flags that could disagree with
//! what it signs, and never runs a binary built for another CPU.

use std::cmp::Ordering;
use std::fmt;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::membership::{sign, verify, Domain, PublicKey, Signature, SignatureError};
use crate::snapshot::{Hash, CHUNK_SIZE_BYTES};

/// The format of [`Release`]; a node refuses another.
pub const RELEASE_FORMAT_VERSION: u32 = 1;

/// Most binaries a release holds: the four CPUs meshnode builds for, with
/// room for as many again.
pub const MAX_RELEASE_BINARIES: usize = 8;

/// Largest binary a release may name: three times the 20 MiB footprint
/// goal, so a debug build can be published for a test but a release can
/// never make a node fetch and store an unbounded file.
pub const MAX_RELEASE_BINARY_BYTES: u64 = 64 * 1024 * 1024;

/// Chunks of the largest binary.
pub const MAX_RELEASE_BINARY_CHUNKS: usize =
    MAX_RELEASE_BINARY_BYTES.div_ceil(CHUNK_SIZE_BYTES as u64) as usize;

/// Longest version string: semantic versions are short, and the version
/// names files in the data directory.
pub const MAX_RELEASE_VERSION_BYTES: usize = 32;

/// Longest note on a one-way data migration (shown when `roll` asks).
pub const MAX_RELEASE_NOTE_BYTES: usize = 512;

/// Largest encoded signed release: 8 binaries of 1,024 chunk hashes
/// (32 KiB each) and the rest.
pub const MAX_SIGNED_RELEASE_BYTES: usize = 320 * 1024;

/// What marks a binary's release fields: `MESHNODE-RELEASE;version=V;
/// peer-protocol=P;min-peer-protocol=M;` follows it in the binary.
pub const MARKER_PREFIX: &[u8] = b"MESHNODE-RELEASE;";

/// Most bytes of marker fields read after [`MARKER_PREFIX`].
const MAX_MARKER_BYTES: usize = 160;

/// A CPU a release has a binary for, as the ELF header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cpu {
    X86_64,
    Aarch64,
    /// 32-bit ARM, hard float (Raspberry Pi OS armhf).
    Armv7,
    Riscv64,
}

impl Cpu {
    /// The CPU this program was built for, if a release can have it.
    pub fn this() -> Option<Cpu> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Cpu::X86_64),
            "aarch64" => Some(Cpu::Aarch64),
            "arm" => Some(Cpu::Armv7),
            "riscv64" => Some(Cpu::Riscv64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cpu::X86_64 => "x86_64",
            Cpu::Aarch64 => "aarch64",
            Cpu::Armv7 => "armv7",
            Cpu::Riscv64 => "riscv64",
        }
    }

    /// The CPU of a Linux ELF executable, from its header: class, byte
    /// order and `e_machine`.
    pub fn of_elf(bytes: &[u8]) -> Result<Cpu, ReleaseError> {
        const EM_ARM: u16 = 40;
        const EM_X86_64: u16 = 62;
        const EM_AARCH64: u16 = 183;
        const EM_RISCV: u16 = 243;
        if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
            return Err(ReleaseError::NotElf);
        }
        let (class, little) = (bytes[4], bytes[5] == 1);
        if !little {
            return Err(ReleaseError::UnknownCpu("big-endian".into()));
        }
        let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
        match (class, machine) {
            (2, EM_X86_64) => Ok(Cpu::X86_64),
            (2, EM_AARCH64) => Ok(Cpu::Aarch64),
            (1, EM_ARM) => Ok(Cpu::Armv7),
            (2, EM_RISCV) => Ok(Cpu::Riscv64),
            _ => Err(ReleaseError::UnknownCpu(format!(
                "ELF class {class}, machine {machine}"
            ))),
        }
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One binary of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseBinary {
    pub cpu: Cpu,
    pub size_bytes: u64,
    /// BLAKE3 of the whole file.
    pub hash: Hash,
    /// Its 64 KiB chunks, in order (the last may be shorter).
    pub chunks: Vec<Hash>,
}

/// What the user key signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub format: u32,
    pub version: String,
    /// The peer protocol its nodes speak, and the oldest they still speak
    /// with: a roll refuses to start while a member speaks an older one.
    pub peer_protocol: u32,
    pub min_peer_protocol: u32,
    /// Set when the release migrates the data directory one way, so that
    /// the previous version cannot read it after: why, for `roll` to show
    /// before it asks. A rollback is then impossible.
    pub one_way_data: Option<String>,
    /// When it was published (the publisher's clock; shown only).
    pub published_unix_ms: u64,
    pub binaries: Vec<ReleaseBinary>,
}

/// A release and the user key's signature of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRelease {
    pub body: Release,
    pub user_key: PublicKey,
    pub signature: Signature,
}

/// Why a release, a binary or a version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("release format {found}, this node reads {RELEASE_FORMAT_VERSION}")]
    Format { found: u32 },
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error(
        "version `{0}` is not MAJOR.MINOR.PATCH[-PRE] of at most {MAX_RELEASE_VERSION_BYTES} bytes"
    )]
    BadVersion(String),
    #[error("a release holds 1 to {MAX_RELEASE_BINARIES} binaries, this one {0}")]
    BinaryCount(usize),
    #[error("two binaries for {0}")]
    DuplicateCpu(Cpu),
    #[error("the {cpu} binary is {size} bytes, more than the limit of {MAX_RELEASE_BINARY_BYTES}")]
    TooLarge { cpu: Cpu, size: u64 },
    #[error("the {cpu} binary names {found} chunks, {size} bytes need {expected}")]
    ChunkCount {
        cpu: Cpu,
        size: u64,
        found: usize,
        expected: usize,
    },
    #[error("the note on its data migration is over {MAX_RELEASE_NOTE_BYTES} bytes")]
    NoteTooLong,
    #[error("min-peer-protocol {min} is above its peer protocol {speaks}")]
    Protocols { min: u32, speaks: u32 },
    #[error("not an ELF executable")]
    NotElf,
    #[error("a CPU that meshnode is not released for ({0})")]
    UnknownCpu(String),
    #[error(
        "no meshnode release marker in it (not a meshnode binary, or one older than releases)"
    )]
    NoMarker,
    #[error("its release marker is malformed: {0}")]
    BadMarker(String),
    #[error("{0} chunks asked at once, more than the limit of {MAX_RELEASE_CHUNKS_PER_REQUEST}")]
    TooManyChunks(usize),
}

impl SignedRelease {
    pub fn sign(user: &SigningKey, body: Release) -> SignedRelease {
        let signature = sign(user, Domain::Release, &body);
        SignedRelease {
            body,
            user_key: PublicKey::of(user),
            signature,
        }
    }

    /// Format, limits, then the signature (who signed is for the caller
    /// to check against its trust list).
    pub fn verify(&self) -> Result<(), ReleaseError> {
        self.body.check()?;
        verify(&self.user_key, Domain::Release, &self.body, &self.signature)?;
        Ok(())
    }

    /// Names the release: the hash of its encoding.
    pub fn id(&self) -> Hash {
        Hash::of(&crate::cbor::encode(self))
    }

    /// The binary for `cpu`, if the release has one.
    pub fn binary_for(&self, cpu: Cpu) -> Option<&ReleaseBinary> {
        self.body.binaries.iter().find(|b| b.cpu == cpu)
    }
}

impl Release {
    /// Every field within its limit and consistent.
    pub fn check(&self) -> Result<(), ReleaseError> {
        if self.format != RELEASE_FORMAT_VERSION {
            return Err(ReleaseError::Format { found: self.format });
        }
        Version::parse(&self.version)?;
        if self.min_peer_protocol > self.peer_protocol {
            return Err(ReleaseError::Protocols {
                min: self.min_peer_protocol,
                speaks: self.peer_protocol,
            });
        }
        if self
            .one_way_data
            .as_ref()
            .is_some_and(|n| n.len() > MAX_RELEASE_NOTE_BYTES)
        {
            return Err(ReleaseError::NoteTooLong);
        }
        let n = self.binaries.len();
        if n == 0 || n > MAX_RELEASE_BINARIES {
            return Err(ReleaseError::BinaryCount(n));
        }
        for (i, b) in self.binaries.iter().enumerate() {
            if self.binaries[..i].iter().any(|o| o.cpu == b.cpu) {
                return Err(ReleaseError::DuplicateCpu(b.cpu));
            }
            b.check()?;
        }
        Ok(())
    }
}

impl ReleaseBinary {
    fn check(&self) -> Result<(), ReleaseError> {
        let (cpu, size) = (self.cpu, self.size_bytes);
        if size > MAX_RELEASE_BINARY_BYTES {
            return Err(ReleaseError::TooLarge { cpu, size });
        }
        let expected = size.div_ceil(u64::from(CHUNK_SIZE_BYTES)) as usize;
        if self.chunks.len() != expected {
            return Err(ReleaseError::ChunkCount {
                cpu,
                size,
                found: self.chunks.len(),
                expected,
            });
        }
        Ok(())
    }
}

/// A semantic version, ordered as semver orders them (a pre-release comes
/// before its release; pre-releases compare as strings, which is enough
/// for `-rc.1`-style tags of one digit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, ReleaseError> {
        let bad = || ReleaseError::BadVersion(s.chars().take(64).collect());
        if s.is_empty() || s.len() > MAX_RELEASE_VERSION_BYTES {
            return Err(bad());
        }
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let pre_ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        if pre.is_some_and(|p| !pre_ok(p)) {
            return Err(bad());
        }
        let mut parts = core.split('.').map(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        });
        let (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Version {
            major,
            minor,
            patch,
            pre: pre.map(str::to_string),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The release fields a meshnode binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub version: String,
    pub peer_protocol: u32,
    pub min_peer_protocol: u32,
}

/// Finds and parses the release marker in a binary's bytes: the first
/// [`MARKER_PREFIX`] followed by `version=…;peer-protocol=…;
/// min-peer-protocol=…;` (the prefix also appears on its own, in the code
/// that reads markers).
pub fn read_marker(binary: &[u8]) -> Result<Marker, ReleaseError> {
    let mut first_error = None;
    let mut from = 0;
    while let Some(at) = binary[from..]
        .windows(MARKER_PREFIX.len())
        .position(|w| w == MARKER_PREFIX)
    {
        let start = from + at + MARKER_PREFIX.len();
        let rest = &binary[start..];
        match parse_marker_fields(&rest[..rest.len().min(MAX_MARKER_BYTES)]) {
            Ok(m) => return Ok(m),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        from = start;
    }
    Err(match first_error {
        Some(e) if binary.windows(8).any(|w| w == b"version=") => e,
        _ => ReleaseError::NoMarker,
    })
}

/// The fields after [`MARKER_PREFIX`]: exactly three `key=value;` pairs
/// in order.
pub fn parse_marker_fields(bytes: &[u8]) -> Result<Marker, ReleaseError> {
    let bad = |why: &str| ReleaseError::BadMarker(why.to_string());
    let mut fields = bytes.split(|&b| b == b';');
    let mut field = |key: &str| -> Result<String, ReleaseError> {
        let f = fields.next().ok_or_else(|| bad("too short"))?;
        let f = std::str::from_utf8(f).map_err(|_| bad("not UTF-8"))?;
        f.strip_prefix(key)
            .and_then(|v| v.strip_prefix('='))
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("no `{key}=`")))
    };
    let version = field("version")?;
    let number = |v: String, key: &str| {
        v.parse::<u32>()
            .map_err(|_| bad(&format!("{key} is not a number")))
    };
    let peer_protocol = number(field("peer-protocol")?, "peer-protocol")?;
    let min_peer_protocol = number(field("min-peer-protocol")?, "min-peer-protocol")?;
    Version::parse(&version)?;
    if min_peer_protocol > peer_protocol {
        return Err(ReleaseError::Protocols {
            min: min_peer_protocol,
            speaks: peer_protocol,
        });
    }
    Ok(Marker {
        version,
        peer_protocol,
        min_peer_protocol,
    })
}

/// Most chunks one [`ReleaseRequest::Chunks`] asks for: 4 MiB of answer,
/// well within a peer response's limit, and a batch a slow link returns
/// within its request timeout.
pub const MAX_RELEASE_CHUNKS_PER_REQUEST: usize = 64;

/// Between members (`upgrade roll`): the chunks of a release's binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseRequest {
    /// These chunks of the release named `release` ([`SignedRelease::id`]).
    /// A node answers only for a release it holds, and only with chunks
    /// that release names.
    Chunks { release: Hash, hashes: Vec<Hash> },
}

/// The answer to a [`ReleaseRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseResponse {
    /// The chunks asked for, in the order asked.
    Chunks(Vec<crate::ids::ChunkBytes>),
}

impl ReleaseRequest {
    pub fn check(&self) -> Result<(), ReleaseError> {
        match self {
            ReleaseRequest::Chunks { hashes, .. }
                if hashes.len() > MAX_RELEASE_CHUNKS_PER_REQUEST =>
            {
                Err(ReleaseError::TooManyChunks(hashes.len()))
            }
            ReleaseRequest::Chunks { .. } => Ok(()),
        }
    }
}

/// Decodes `data` as a signed release and checks it; for the fuzz target
/// (`fuzz_targets/release.rs`): whatever the bytes, no panic, and a
/// release that verifies re-encodes to one that verifies.
pub fn fuzz_release(data: &[u8]) -> bool {
    let Ok(r) = crate::cbor::decode::<SignedRelease>(data) else {
        let _ = read_marker(data);
        return false;
    };
    if r.verify().is_ok() {
        let again: SignedRelease =
            crate::cbor::decode(&crate::cbor::encode(&r)).expect("a release re-decodes");
        assert_eq!(again.verify(), Ok(()), "a verified release re-verifies");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(binaries: Vec<ReleaseBinary>) -> Release {
        Release {
            format: RELEASE_FORMAT_VERSION,
            version: "1.2.3".into(),
            peer_protocol: 1,
            min_peer_protocol: 1,
            one_way_data: None,
            published_unix_ms: 0,
            binaries,
        }
    }

    fn binary(cpu: Cpu, size_bytes: u64) -> ReleaseBinary {
        let n = size_bytes.div_ceil(u64::from(CHUNK_SIZE_BYTES)) as usize;
        ReleaseBinary {
            cpu,
            size_bytes,
            hash: Hash::of(b"x"),
            chunks: vec![Hash::of(b"c"); n],
        }
    }

    #[test]
    fn a_signed_release_verifies_and_a_changed_one_does_not() {
        let user = SigningKey::from_bytes(&[7; 32]);
        let signed = SignedRelease::sign(&user, release(vec![binary(Cpu::X86_64, 100_000)]));
        signed.verify().unwrap();
        let mut changed = signed.clone();
        changed.body.version = "1.2.4".into();
        assert!(matches!(
            changed.verify(),
            Err(ReleaseError::Signature(SignatureError::Mismatch))
        ));
    }

    #[test]
    fn limits_are_checked() {
        let two = release(vec![binary(Cpu::X86_64, 1), binary(Cpu::X86_64, 1)]);
        assert_eq!(two.check(), Err(ReleaseError::DuplicateCpu(Cpu::X86_64)));
        let big = release(vec![binary(Cpu::Armv7, MAX_RELEASE_BINARY_BYTES + 1)]);
        assert!(matches!(big.check(), Err(ReleaseError::TooLarge { .. })));
        let mut short = binary(Cpu::Riscv64, 200_000);
        short.chunks.pop();
        let short = release(vec![short]);
        assert!(matches!(
            short.check(),
            Err(ReleaseError::ChunkCount { .. })
        ));
        assert_eq!(release(vec![]).check(), Err(ReleaseError::BinaryCount(0)));
    }

    #[test]
    fn versions_order_as_semver() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.1.0") < v("0.1.1"));
        assert!(v("0.2.0") > v("0.1.10"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
        assert!(v("1.0.0-rc.1") < v("1.0.0-rc.2"));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.x.3",
            "1.2.3-",
            "01.2.3 ",
            "1.2.3-a b",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cpu_is_read_from_the_elf_header() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[5] = 1;
        for (class, machine, cpu) in [
            (2, 62u16, Cpu::X86_64),
            (2, 183, Cpu::Aarch64),
            (1, 40, Cpu::Armv7),
            (2, 243, Cpu::Riscv64),
        ] {
            elf[4] = class;
            elf[18..20].copy_from_slice(&machine.to_le_bytes());
            assert_eq!(Cpu::of_elf(&elf), Ok(cpu));
        }
        elf[4] = 1;
        elf[18..20].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            Cpu::of_elf(&elf),
            Err(ReleaseError::UnknownCpu(_))
        ));
        assert_eq!(Cpu::of_elf(b"#!/bin/sh\n"), Err(ReleaseError::NotElf));
    }

    #[test]
    fn the_marker_is_found_and_parsed() {
        let bin = b"MESHNODE-RELEASE;\0junkMESHNODE-RELEASE;version=0.4.1;peer-protocol=2;min-peer-protocol=1;\0more";
        assert_eq!(
            read_marker(bin),
            Ok(Marker {
                version: "0.4.1".into(),
                peer_protocol: 2,
                min_peer_protocol: 1
            })
        );
        assert_eq!(read_marker(b"no marker"), Err(ReleaseError::NoMarker));
        let bad = b"MESHNODE-RELEASE;version=0.4.1;peer-protocol=x;min-peer-protocol=1;";
        assert!(matches!(read_marker(bad), Err(ReleaseError::BadMarker(_))));
    }

    /// The seeded smoke test of the fuzz target `release_messages`:
    /// mutations of a valid signed release never panic, and enough still
    /// decode that the run is past the decoder's error path.
    #[test]
    fn mutated_releases_never_panic() {
        use crate::fuzzing::{assert_decoded_share, mutate, write_seeds, SplitMix64};
        let user = SigningKey::from_bytes(&[9; 32]);
        let signed = SignedRelease::sign(&user, release(vec![binary(Cpu::Aarch64, 300_000)]));
        let bytes = crate::cbor::encode(&signed);
        write_seeds("release_messages", std::slice::from_ref(&bytes));
        assert!(fuzz_release(&bytes));
        let mut rng = SplitMix64(0x5eed_2026_1207);
        let total = 2000;
        let decoded = (0..total)
            .filter(|_| fuzz_release(&mutate(&mut rng, &bytes)))
            .count();
        assert_decoded_share("release_messages", decoded, total, 50);
    }
}

//! Signed rolling upgrades through the mesh (issue 17 item 4;
//! docs/guide.md, "Upgrading"; docs/protocol.md, "Releases and version
//! skew").
//!
//! By stage, each file one job:
//! - here: the release marker this binary carries, and the version it
//!   runs;
//! - [`releases`]: the releases this node keeps (published here, or
//!   installed), their chunks held against garbage collection, and the
//!   chunks it serves to members from them;
//! - [`fetch`]: fetching the chunks of this node's binary that it lacks;
//! - [`bins`]: the binary directory (`bin/current`, `bin/previous`), the
//!   verified install and the atomic switch;
//! - [`probation`]: after a restart into a new binary, commit it once the
//!   node is healthy, or put the previous one back;
//! - [`restart`]: ending the node's loop and exec'ing the current binary;
//! - [`command`]: the control commands (`upgrade publish`, `roll`,
//!   `rollback`) as the node runs them.

pub mod bins;
pub mod command;
pub mod fetch;
pub mod probation;
pub mod releases;
pub mod restart;

use std::sync::OnceLock;

use protocol::release::{parse_marker_fields, Marker, MARKER_PREFIX};

/// This binary's release fields, where `upgrade publish` reads them
/// without running the binary (it may be for another CPU). The peer
/// protocol is the vessel protocol's version: this build speaks exactly
/// that one (`protocol::peer::VESSEL_PROTOCOL_VERSION`, checked by a test).
#[used]
pub static RELEASE_MARKER: [u8; MARKER_BYTES.len()] = MARKER_BYTES;

const MARKER_BYTES: [u8; marker_text().len()] = marker_array();

const fn marker_text() -> &'static str {
    concat!(
        "MESHNODE-RELEASE;version=",
        env!("CARGO_PKG_VERSION"),
        ";peer-protocol=2;min-peer-protocol=2;"
    )
}

const fn marker_array() -> [u8; marker_text().len()] {
    let text = marker_text().as_bytes();
    let mut out = [0u8; marker_text().len()];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i];
        i += 1;
    }
    out
}

/// The release fields this binary runs with, read from its marker at run
/// time (volatile reads, so that what the file holds is what counts: a
/// test publishes a copy whose marker says a newer version).
pub fn marker() -> &'static Marker {
    static MARKER: OnceLock<Marker> = OnceLock::new();
    MARKER.get_or_init(|| {
        let bytes: Vec<u8> = (0..RELEASE_MARKER.len())
            // SAFETY: `i` is within the static array, which lives for the
            // whole program; a volatile read keeps the compiler from
            // answering with the compile-time constant.
            .map(|i| unsafe { std::ptr::read_volatile(RELEASE_MARKER.as_ptr().add(i)) })
            .collect();
        let fields = bytes
            .strip_prefix(MARKER_PREFIX)
            .expect("the marker starts with its prefix");
        parse_marker_fields(fields).expect("this binary's own marker parses")
    })
}

/// The version this binary runs: its marker's.
pub fn running_version() -> &'static str {
    &marker().version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_this_build() {
        let m = marker();
        assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(m.peer_protocol, protocol::peer::VESSEL_PROTOCOL_VERSION);
        assert_eq!(m.min_peer_protocol, protocol::peer::VESSEL_PROTOCOL_VERSION);
        assert_eq!(
            protocol::release::read_marker(&RELEASE_MARKER).as_ref(),
            Ok(m)
        );
    }
}

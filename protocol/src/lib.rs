//! meshnode's wire and storage types. Plain data only: this crate opens no
//! file and no socket, so every type here can be fuzzed and reasoned about on
//! its own.
//!
//! Main types:
//! - [`wasi::WasiState`]: a vessel's virtual OS state (descriptor table, args,
//!   env, clocks, stdio positions). The dock keeps host handles only as a cache
//!   that it rebuilds from this value, which is what lets a capture carry it.
//! - [`limits`]: the named bounds on everything that comes from outside.
//! - [`snapshot::Manifest`]: a captured vessel (module, memory chunks,
//!   globals, typed frames, WASI state), named by the hash of its encoding.
//! - [`cbor`]: ciborium encoding with explicit size limits on decode.
//! - [`membership`]: keys, domain-separated signatures, member certificates,
//!   invite grants and join tokens (docs/security.md).
//! - [`control`]: the CLI ↔ node control protocol (docs/protocol.md);
//!   [`status`]: what `peers` lists and the gossiped node status;
//!   [`coordinate`]: the Vivaldi network coordinate a status carries.
//! - [`vessel`]: a vessel's signed [`vessel::Deployment`] and the
//!   [`vessel::VesselImage`] that travels when it moves (snapshot, volumes,
//!   log).
//! - [`peer`]: the node ↔ node vessel protocol's envelope, over
//!   - [`migrate`]: signed migration offers with receiver-issued nonces,
//!     deduplicated chunks, one commit point;
//!   - [`forward`]: control commands forwarded to the member that acts;
//!   - [`ingress`]: service clients' bytes between entry node and host;
//!   - [`replica`]: checkpoints shipped to the nodes that keep a vessel's
//!     replicas.
//! - [`lease`]: the lease and fencing of a replicated vessel: signed
//!   assignment certificates, lease requests and grants, votes.
//! - [`refusal`]: the code (and human detail) of every refusal.
//! - [`release`]: signed releases (`meshnode upgrade`): a version and one
//!   binary per CPU, by hash and chunks.
//! - [`duration`]: the one parser of durations (`500ms`, `1.5s`, `10m`,
//!   `1h`) that every command line and scenario file uses.
//! - [`volumes`]: a vessel's volumes read from outside (`volumes`, `cp`).
//! - [`ids`]: small shared types (vessel ids, PeerIds and chunks as bytes).
//!
//! No module imports another in a circle: `ids`, `limits` and `refusal`
//! import nothing of the crate; `peer` is imported by none.

pub mod cbor;
pub mod control;
pub mod coordinate;
pub mod duration;
pub mod forced;
pub mod forward;
pub mod fuzzing;
pub mod ids;
pub mod ingress;
pub mod lease;
pub mod limits;
pub mod membership;
pub mod migrate;
pub mod peer;
pub mod refusal;
pub mod release;
pub mod replica;
pub mod revocation;
pub mod snapshot;
pub mod status;
pub mod vessel;
pub mod volumes;
pub mod wasi;

#[cfg(test)]
mod tests {
    /// Every module's source, to check how they use each other.
    const SOURCES: &[(&str, &str)] = &[
        ("cbor", include_str!("cbor.rs")),
        (
            "control",
            concat!(
                include_str!("control/mod.rs"),
                include_str!("control/commands.rs"),
                include_str!("control/oracle.rs"),
                include_str!("control/reports.rs"),
                include_str!("control/status_report.rs"),
            ),
        ),
        ("coordinate", include_str!("coordinate.rs")),
        ("duration", include_str!("duration.rs")),
        ("forced", include_str!("forced.rs")),
        ("forward", include_str!("forward.rs")),
        ("fuzzing", include_str!("fuzzing.rs")),
        ("ids", include_str!("ids.rs")),
        ("ingress", include_str!("ingress.rs")),
        ("lease", include_str!("lease.rs")),
        ("limits", include_str!("limits.rs")),
        ("membership", include_str!("membership.rs")),
        ("migrate", include_str!("migrate.rs")),
        ("peer", include_str!("peer.rs")),
        ("refusal", include_str!("refusal.rs")),
        ("release", include_str!("release.rs")),
        ("replica", include_str!("replica.rs")),
        ("revocation", include_str!("revocation.rs")),
        ("snapshot", include_str!("snapshot.rs")),
        ("status", include_str!("status.rs")),
        ("vessel", include_str!("vessel.rs")),
        ("volumes", include_str!("volumes.rs")),
        ("wasi", include_str!("wasi.rs")),
    ];

    /// The modules `source` names as `crate::MODULE` (imports, paths, doc
    /// links and tests alike).
    fn uses(source: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (i, _) in source.match_indices("crate::") {
            let rest = &source[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if let Some((m, _)) = SOURCES.iter().find(|(m, _)| *m == &rest[..end]) {
                if !out.contains(m) {
                    out.push(*m);
                }
            }
        }
        out
    }

    /// A path from `from` back to `to` through the modules' uses, if any.
    fn path_back(from: &'static str, to: &str, seen: &mut Vec<&'static str>) -> bool {
        let src = SOURCES.iter().find(|(m, _)| *m == from).expect("listed").1;
        for next in uses(src).into_iter().filter(|m| *m != from) {
            if next == to {
                seen.push(next);
                return true;
            }
            if !seen.contains(&next) {
                seen.push(next);
                if path_back(next, to, seen) {
                    return true;
                }
                seen.pop();
            }
        }
        false
    }

    /// No module of this crate uses another in a circle: the leaf types are
    /// in `ids` and `refusal`, and the envelope `peer` is used by none.
    #[test]
    fn no_module_uses_another_in_a_circle() {
        let declared = include_str!("lib.rs").matches("\npub mod ").count();
        assert_eq!(declared, SOURCES.len(), "list every module in SOURCES");
        for (m, _) in SOURCES {
            let mut path = vec![*m];
            assert!(
                !path_back(m, m, &mut path),
                "modules use each other in a circle: {}",
                path.join(" -> ")
            );
        }
    }
}

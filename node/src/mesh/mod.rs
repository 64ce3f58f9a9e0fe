//! The mesh: a node's libp2p swarm and what runs on it.
//!
//! The modules use each other without a circle (a unit test below checks
//! it). From the bottom up:
//! - leaves: [`codec`] (the ciborium request-response codec with explicit
//!   limits), [`rtt`] (smoothed round-trip times), [`status`] (what this
//!   node gossips about itself), [`faults`] (test-only fault points);
//!   [`behaviour`]: the swarm's protocols (identify, ping, mDNS, Kademlia,
//!   gossipsub, membership and control request-response) and how the swarm
//!   is built (TCP and QUIC, noise, yamux); [`liveness`]: failure
//!   detection (each peer up, unreachable or down) and
//!   [`liveness::Suspects`], the handle tasks ask; [`peers`]: the peer
//!   table's entries and [`peers::Membership`]; [`swim`]: the driver of
//!   the SWIM-style membership protocol (the `membership` crate, issue 19),
//!   beside `liveness`, which still decides leases;
//! - [`link`]: [`link::NodeCommand`], what tasks ask the event loop, and
//!   the request/await link to peers over it ([`link::Link`]);
//! - [`vessels`]: the migration side's state ([`vessels::Migrator`], the
//!   handle a task holds; [`vessels::MigrationState`], what the event loop
//!   keeps) and the vessel protocol's constants. Their decisions are the
//!   migration layer's ([`crate::migration`]);
//! - [`migrate`]: the source side of a migration, and
//!   [`migrate::start_migration`], how everything else starts one;
//!   [`lease`]: the lease of a replicated vessel (voters, holders,
//!   elections; the rules are [`crate::failover`]'s);
//!   [`ingress`]: service ingress (entry and host roles, its own state;
//!   [`route_proof`]: an entry checks a leased vessel's new epoch;
//!   [`announce`]: the routes a host gossips and its arrival notices);
//! - [`place`]: placement in the running node: the periodic tick that moves
//!   vessels nearer their clients, pin/unpin, and drain (its own state:
//!   [`place::Placer`]);
//! - [`state`]: [`state::NodeState`], the event loop's state grouped by
//!   owner (peer table, link, migration, placement, ingress);
//! - on it: [`membership`] (the certificate exchange, judging peers,
//!   `--join`), [`status_gossip`] (publishing and judging statuses),
//!   [`status_change`] (when a status is worth sending),
//!   [`commands`] (control commands across the mesh: run here or forward to
//!   the member that acts; [`silent`]: what they do about a suspected host;
//!   [`clash`]: a deploy's name or port that a live vessel holds;
//!   [`remove`]: `rm` and the tombstones that keep a vessel removed;
//!   [`volume_serve`]: `volumes` and `cp` where the volumes are), [`serve`] (the destination side of a migration
//!   and the requests peers send), [`recover`] (start-up recovery and the
//!   clean-stop checkpoint), [`checkpoint`] (the periodic checkpoints and
//!   `meshnode checkpoint`), [`replicate`] and [`replica_serve`] (a
//!   replicated vessel's checkpoints shipped to its replicas, and kept
//!   there; their state is the leaf [`replica_book`]);
//! - on top, [`node`]: the event loop, which dispatches swarm events,
//!   commands and ticks to the modules below. The control protocol's server
//!   side is [`crate::control::server`].
//!
//! Control, placement and ingress start and read migrations only through
//! the migration side's public functions, and none reaches into another's
//! state: each task holds the handle of the owner it works for.
//!
//! Adding a protocol (migration, deployment): add a behaviour field to
//! [`behaviour::NodeBehaviour`], handle its events in `node::handle_behaviour`,
//! and serve a peer only when `NodeState::peers[peer].membership` is
//! `Member`. Requests from the rest of the node reach the event loop through
//! [`link::NodeCommand`]. Control commands are new variants at the end of
//! `protocol::control::Command`, answered in [`crate::control::server`]. Bulk
//! transfers should prefer QUIC streams: libp2p-stream over yamux 0.13 has a
//! known deadlock.

pub mod absent;
pub mod announce;
pub mod behaviour;
pub mod checkpoint;
pub mod clash;
pub mod codec;
pub mod commands;
pub mod conn_health;
pub mod faults;
pub mod force;
pub mod gate;
pub mod ingress;
pub mod lease;
pub mod ledger;
pub mod link;
pub mod liveness;
pub mod membership;
pub mod migrate;
pub mod node;
pub mod outlook;
pub mod output_commit;
pub mod pack;
pub mod peers;
pub mod place;
pub mod ps;
pub mod recover;
pub mod relay;
pub mod remove;
pub mod replica_book;
pub mod replica_serve;
pub mod replicate;
pub mod route_proof;
pub mod rtt;
pub mod serve;
pub mod silent;
pub mod state;
pub mod status;
pub mod status_change;
pub mod status_gossip;
pub mod swim;
pub mod transfer;
pub mod trust;
pub mod vessels;
pub mod volume_serve;

/// Protocol names on the wire.
pub const CONTROL_PROTOCOL: &str = "/meshnode/control/2";
pub const MEMBER_PROTOCOL: &str = "/meshnode/member/1";
/// SWIM-style membership and failure detection ([`swim`], issue 19).
pub const SWIM_PROTOCOL: &str = "/meshnode/swim/1";
/// The vessel protocol; its version is the number at the end (see
/// `protocol::peer` and docs/protocol.md, "Versions").
pub const VESSEL_PROTOCOL: &str = protocol::peer::VESSEL_PROTOCOL;
pub const KAD_PROTOCOL: &str = "/meshnode/kad/1.0.0";
pub const IDENTIFY_PROTOCOL: &str = "/meshnode/id/1";
/// The gossipsub topic of node status messages.
pub const STATUS_TOPIC: &str = "meshnode/status/1";

#[cfg(test)]
mod tests {
    //! The modules of `mesh/` use each other without a circle: the graph of
    //! who names whom (`use super::X`, `super::X::…`, `crate::mesh::X`, in
    //! imports, paths and doc links alike) is acyclic.

    use std::collections::BTreeMap;

    /// Every module's source, by name.
    const SOURCES: &[(&str, &str)] = &[
        ("absent", include_str!("absent.rs")),
        ("announce", include_str!("announce.rs")),
        ("behaviour", include_str!("behaviour.rs")),
        ("checkpoint", include_str!("checkpoint.rs")),
        ("clash", include_str!("clash.rs")),
        ("output_commit", include_str!("output_commit.rs")),
        ("codec", include_str!("codec.rs")),
        ("commands", include_str!("commands.rs")),
        ("conn_health", include_str!("conn_health.rs")),
        ("faults", include_str!("faults.rs")),
        ("force", include_str!("force.rs")),
        ("gate", include_str!("gate.rs")),
        (
            "ingress",
            concat!(
                include_str!("ingress/mod.rs"),
                include_str!("ingress/entry.rs")
            ),
        ),
        ("lease", include_str!("lease/mod.rs")),
        ("ledger", include_str!("ledger.rs")),
        ("link", include_str!("link.rs")),
        ("liveness", include_str!("liveness.rs")),
        ("membership", include_str!("membership.rs")),
        ("migrate", include_str!("migrate.rs")),
        ("node", include_str!("node.rs")),
        ("outlook", include_str!("outlook.rs")),
        ("pack", include_str!("pack.rs")),
        ("peers", include_str!("peers.rs")),
        ("place", include_str!("place.rs")),
        ("ps", include_str!("ps.rs")),
        ("recover", include_str!("recover.rs")),
        ("relay", include_str!("relay.rs")),
        ("remove", include_str!("remove.rs")),
        ("replica_book", include_str!("replica_book.rs")),
        ("replica_serve", include_str!("replica_serve.rs")),
        ("replicate", include_str!("replicate.rs")),
        ("route_proof", include_str!("route_proof.rs")),
        ("rtt", include_str!("rtt.rs")),
        ("serve", include_str!("serve.rs")),
        ("silent", include_str!("silent.rs")),
        ("state", include_str!("state.rs")),
        ("status", include_str!("status.rs")),
        ("status_change", include_str!("status_change.rs")),
        ("status_gossip", include_str!("status_gossip.rs")),
        ("swim", include_str!("swim.rs")),
        ("transfer", include_str!("transfer.rs")),
        ("trust", include_str!("trust.rs")),
        ("vessels", include_str!("vessels.rs")),
        ("volume_serve", include_str!("volume_serve.rs")),
    ];

    /// The identifier at the start of `s`.
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// The first segment of each path in a `{a, b::c, d::{e, f}}` group that
    /// starts `s` (just after its `{`).
    fn group_heads(s: &str) -> Vec<&str> {
        let mut heads = Vec::new();
        let (mut depth, mut at_start) = (0usize, true);
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_start = true,
                c if at_start && !c.is_whitespace() => {
                    heads.push(ident(&s[i..]));
                    at_start = false;
                }
                _ => {}
            }
        }
        heads
    }

    /// The modules of `mesh/` that `source` names, other than `itself`.
    fn uses(source: &str, itself: &str) -> Vec<&'static str> {
        let mut named: Vec<&str> = Vec::new();
        for prefix in ["super::", "crate::mesh::"] {
            for (i, _) in source.match_indices(prefix) {
                let rest = &source[i + prefix.len()..];
                match rest.strip_prefix('{') {
                    Some(group) => named.extend(group_heads(group)),
                    None => named.push(ident(rest)),
                }
            }
        }
        let mut out: Vec<&'static str> = SOURCES
            .iter()
            .map(|(m, _)| *m)
            .filter(|m| *m != itself && named.contains(m))
            .collect();
        out.sort_unstable();
        out
    }

    /// The edges of the module graph.
    fn graph(sources: &[(&'static str, &str)]) -> BTreeMap<&'static str, Vec<&'static str>> {
        sources.iter().map(|(m, src)| (*m, uses(src, m))).collect()
    }

    /// A circle in `graph`, as the path that closes it, if there is one.
    fn circle(graph: &BTreeMap<&'static str, Vec<&'static str>>) -> Option<Vec<&'static str>> {
        /// 0: not seen; 1: on the current path; 2: done, no circle through it.
        fn visit(
            m: &'static str,
            graph: &BTreeMap<&'static str, Vec<&'static str>>,
            mark: &mut BTreeMap<&'static str, u8>,
            path: &mut Vec<&'static str>,
        ) -> bool {
            match mark.get(m).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| *p == m).expect("on the path");
                    path.drain(..start);
                    path.push(m);
                    return true;
                }
                2 => return false,
                _ => {}
            }
            mark.insert(m, 1);
            path.push(m);
            for next in graph.get(m).into_iter().flatten() {
                if visit(next, graph, mark, path) {
                    return true;
                }
            }
            path.pop();
            mark.insert(m, 2);
            false
        }
        let mut mark = BTreeMap::new();
        for m in graph.keys() {
            let mut path = Vec::new();
            if visit(m, graph, &mut mark, &mut path) {
                return Some(path);
            }
        }
        None
    }

    #[test]
    fn every_module_is_listed() {
        let declared = include_str!("mod.rs").matches("\npub mod ").count();
        assert_eq!(declared, SOURCES.len(), "list every module in SOURCES");
    }

    #[test]
    fn the_parser_finds_every_form_of_use() {
        let src = "use super::link::Link;\npub use super::{peers, state::NodeState};\n\
                   let x = super::vessels::refuse(); crate::mesh::place::tick();\n\
                   use super::{\n    faults::{a, b},\n    rtt,\n};";
        assert_eq!(
            uses(src, "node"),
            ["faults", "link", "peers", "place", "rtt", "state", "vessels"]
        );
        let two = graph(&[
            ("link", "use super::vessels::X;"),
            ("vessels", "super::link::f()"),
        ]);
        assert_eq!(circle(&two), Some(vec!["link", "vessels", "link"]));
        let chain = graph(&[
            ("link", "use super::vessels::X;"),
            ("vessels", "use super::rtt;"),
        ]);
        assert_eq!(circle(&chain), None);
    }

    #[test]
    fn no_module_uses_another_in_a_circle() {
        let g = graph(SOURCES);
        assert!(
            g["node"].contains(&"state"),
            "the parser sees the uses: {g:?}"
        );
        if let Some(path) = circle(&g) {
            panic!(
                "mesh/ modules use each other in a circle: {}",
                path.join(" -> ")
            );
        }
    }
}

//! What `ps` says of a vessel whose host failure detection suspects
//! (issue 15, item 4): who takes it over, or why no one can by itself and
//! what the user can do.
//!
//! Every host gossips, with each vessel it runs, its lease's voters (in the
//! certificate's order, which is the order `lease::takeover` ranks them in)
//! and the replicas that hold a checkpoint of it ([`facts`]). Once the host
//! is suspected, any node can judge from that and from whom it still
//! reaches ([`judge`]):
//!
//! - a majority of the voters in reach, and one of them holds a replica:
//!   the first such voter after the host takes it over (takeover's ranking);
//! - fewer than `MIN_VOTERS_FOR_FAILOVER` voters (a mesh of fewer than 3
//!   members when it was deployed): no one takes over by itself;
//! - a minority of the voters in reach: this side is cut off (or the rest
//!   died): no one takes over by itself here;
//! - no replica: nothing to run it from.
//!
//! It only reports; failure detection and this judgement never move a
//! vessel (the lease does).

use std::time::Duration;

use libp2p::PeerId;
use protocol::control::{PeerIdBytes, StatusVessel, MAX_STATUS_FAILOVER_VESSELS};
use protocol::lease::majority;
use protocol::limits::MIN_VOTERS_FOR_FAILOVER;

use super::lease::{LeaseStatus, Leases};
use super::liveness::{Suspects, Suspicion};
use super::replica_book::Replication;

/// Fills in the voters and replicas of the vessels a status names (the
/// first [`MAX_STATUS_FAILOVER_VESSELS`]), from this host's leases and
/// replication.
pub fn facts(leases: &Leases, replication: &Replication, named: &mut [StatusVessel]) {
    let now = std::time::Instant::now();
    for v in named.iter_mut().take(MAX_STATUS_FAILOVER_VESSELS) {
        if let Some(LeaseStatus::Held(cert)) = leases.status(v.id) {
            v.voters = cert.body.voters.clone();
        }
        if let Some(row) = replication.row(v.id, now) {
            v.replicas = row
                .replicas
                .iter()
                .filter(|r| r.image.is_some())
                .filter_map(|r| r.node.parse::<PeerId>().ok())
                .map(|p| PeerIdBytes(p.to_bytes()))
                .collect();
        }
    }
}

/// Where a vessel of a suspected host stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outlook {
    /// A majority of its voters is in reach and `to` (a voter that holds
    /// its replica) takes it over.
    FailingOver { to: PeerId },
    /// It has no lease: fewer voters than a takeover needs.
    TooFewVoters { voters: usize, replica: PeerId },
    /// Only `reached` of its `voters` are in reach from here.
    Minority {
        reached: usize,
        voters: usize,
        replica: Option<PeerId>,
    },
    /// Its voters in reach hold no replica of it (`replica`: one that is
    /// not a voter, if any).
    NoVoterHoldsIt { replica: Option<PeerId> },
    /// Nothing holds a checkpoint of it.
    NoReplica,
}

fn peer(bytes: &PeerIdBytes) -> Option<PeerId> {
    PeerId::from_bytes(&bytes.0).ok()
}

/// Judges `v` of suspected `host` from this node (`me`), which reaches the
/// peers `suspects` does not suspect.
pub fn judge(v: &StatusVessel, host: PeerId, suspects: &Suspects, me: PeerId) -> Outlook {
    let in_reach = |p: &PeerId| *p == me || (*p != host && suspects.of(p).is_none());
    let replicas: Vec<PeerId> = v.replicas.iter().filter_map(peer).collect();
    let replica_in_reach = replicas.iter().copied().find(|p| in_reach(p));
    let voters: Vec<PeerId> = v.voters.iter().filter_map(peer).collect();
    if replicas.is_empty() {
        return Outlook::NoReplica;
    }
    if voters.len() < MIN_VOTERS_FOR_FAILOVER {
        return Outlook::TooFewVoters {
            voters: voters.len(),
            replica: replica_in_reach.unwrap_or(replicas[0]),
        };
    }
    let reached = voters.iter().filter(|p| in_reach(p)).count();
    if reached < majority(voters.len()) {
        return Outlook::Minority {
            reached,
            voters: voters.len(),
            replica: replica_in_reach,
        };
    }
    // Takeover's ranking: the voters other than the host, in order; the
    // first that keeps a replica and is alive asks first.
    match voters
        .iter()
        .copied()
        .filter(|p| *p != host)
        .find(|p| replicas.contains(p) && in_reach(p))
    {
        Some(to) => Outlook::FailingOver { to },
        None => Outlook::NoVoterHoldsIt {
            replica: replica_in_reach,
        },
    }
}

/// The command that decides by hand.
fn recover_hint(name: &str, on: PeerId) -> String {
    format!("if its host is gone for good: meshnode recover {name} --on {on} --force")
}

/// What `ps` says in WHY: `host unreachable 2.1 s, failing over to X`, or
/// why it cannot and what to do.
pub fn describe(outlook: &Outlook, name: &str, suspicion: &Suspicion) -> String {
    let host = format!(
        "host {} {:.1} s",
        suspicion.state(),
        silent_secs(suspicion.silent())
    );
    let cannot = "it cannot fail over by itself";
    match outlook {
        Outlook::FailingOver { to } => format!("{host}, failing over to {to}"),
        Outlook::TooFewVoters { voters, replica } => format!(
            "{host}; {cannot}: it has no lease ({voters} voter(s), a takeover needs {MIN_VOTERS_FOR_FAILOVER}: \
             the mesh had fewer than {MIN_VOTERS_FOR_FAILOVER} members when it was deployed); {}",
            recover_hint(name, *replica)
        ),
        Outlook::Minority {
            reached,
            voters,
            replica,
        } => {
            let what = format!(
                "{host}; {cannot}: this side reaches {reached} of its {voters} voters, not a majority \
                 (a minority partition, or the others are down)"
            );
            match replica {
                Some(r) => format!("{what}; {}", recover_hint(name, *r)),
                None => format!("{what}, and no replica of it in reach"),
            }
        }
        Outlook::NoVoterHoldsIt { replica } => {
            let what = format!("{host}; {cannot}: none of its voters in reach holds its replica");
            match replica {
                Some(r) => format!("{what}; {}", recover_hint(name, *r)),
                None => what,
            }
        }
        Outlook::NoReplica => format!(
            "{host}; it cannot fail over: no replica holds a checkpoint of it \
             (deployed with --replicas 0, or none shipped yet); it runs again when its host is back"
        ),
    }
}

fn silent_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// How long after its host went silent a vessel that can fail over is
/// waited for by a drain of the dead host: a takeover comes a hold (1.7 s)
/// after the host's last grant, plus a stagger per rank and a round of
/// votes; detection alone takes 3 s; the rest is slack for a loaded board.
pub const DRAIN_FAILOVER_BOUND: Duration = Duration::from_secs(20);

/// `meshnode drain DEAD` of a host failure detection suspects: it cannot
/// move anything itself, so the drain reports, for each vessel it last
/// said it runs (`vessels`), what the mesh does with it: `moved` to the
/// node that runs it at a higher epoch now (`rows`, the mesh's `ps`),
/// `failing over to X` while a takeover is due (bounded by
/// [`DRAIN_FAILOVER_BOUND`] from the host's silence), or `failed: …` with
/// why it cannot and what to do. It moves nothing and bypasses nothing:
/// the takeovers are the replicas' own, through the lease, which start as
/// soon as the voters can sign them.
pub fn dead_drain_report(
    dead: PeerId,
    suspicion: &Suspicion,
    vessels: &[StatusVessel],
    rows: &[protocol::control::VesselInfo],
    suspects: &Suspects,
    me: PeerId,
) -> protocol::control::DrainReport {
    let items: Vec<protocol::control::DrainItem> = vessels
        .iter()
        .map(|v| dead_drain_item(dead, suspicion, v, rows, suspects, me))
        .collect();
    protocol::control::DrainReport {
        node: dead.to_string(),
        done: items
            .iter()
            .all(|i| i.state == "moved" || i.state.starts_with("failed")),
        vessels: items,
    }
}

fn dead_drain_item(
    dead: PeerId,
    suspicion: &Suspicion,
    v: &StatusVessel,
    rows: &[protocol::control::VesselInfo],
    suspects: &Suspects,
    me: PeerId,
) -> protocol::control::DrainItem {
    let item = |to: Option<String>, state: String| protocol::control::DrainItem {
        id: v.id,
        name: v.name.clone(),
        to,
        state,
    };
    let dead_name = dead.to_string();
    let moved = rows.iter().find(|r| {
        r.id == v.id
            && r.node != dead_name
            && r.epoch > v.epoch
            && matches!(r.state.as_str(), "running" | "held" | "migrating")
    });
    if let Some(r) = moved {
        return item(Some(r.node.clone()), "moved".into());
    }
    let outlook = judge(v, dead, suspects, me);
    match outlook {
        Outlook::FailingOver { to } if suspicion.silent() < DRAIN_FAILOVER_BOUND => {
            item(Some(to.to_string()), format!("failing over to {to}"))
        }
        Outlook::FailingOver { to } => item(
            None,
            format!(
                "failed: {to} did not take it over within {} s of its host's silence (its log says why)",
                DRAIN_FAILOVER_BOUND.as_secs()
            ),
        ),
        other => item(
            None,
            format!("failed: {}", describe(&other, &v.name, suspicion)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::liveness::State;
    use protocol::vessel::VesselId;
    use std::time::Instant;

    fn bytes(p: PeerId) -> PeerIdBytes {
        PeerIdBytes(p.to_bytes())
    }

    fn status(voters: &[PeerId], replicas: &[PeerId]) -> StatusVessel {
        StatusVessel {
            id: VesselId([1; 8]),
            name: "kv".into(),
            epoch: 1,
            voters: voters.iter().copied().map(bytes).collect(),
            replicas: replicas.iter().copied().map(bytes).collect(),
        }
    }

    fn suspect(suspects: &Suspects, peers: &[PeerId], secs: f64) {
        let since = Instant::now() - Duration::from_secs_f64(secs);
        suspects.publish(
            peers
                .iter()
                .map(|p| (*p, State::Unreachable { since }))
                .collect::<Vec<_>>()
                .into_iter(),
        );
    }

    #[test]
    fn the_first_live_voter_after_the_host_with_a_replica_takes_over() {
        let [host, a, b, me] = [(); 4].map(|_| PeerId::random());
        let suspects = Suspects::default();
        suspect(&suspects, &[host], 2.1);
        // a ranks first but holds no replica; b and me both do: b first.
        let v = status(&[host, a, b, me], &[me, b]);
        assert_eq!(
            judge(&v, host, &suspects, me),
            Outlook::FailingOver { to: b }
        );
        // b is silent too: me, the next one.
        suspect(&suspects, &[host, b], 2.1);
        assert_eq!(
            judge(&v, host, &suspects, me),
            Outlook::Minority {
                reached: 2,
                voters: 4,
                replica: Some(me)
            },
            "2 of 4 is no majority"
        );
        let v = status(&[host, a, b, me, PeerId::random()], &[me, b]);
        assert_eq!(
            judge(&v, host, &suspects, me),
            Outlook::FailingOver { to: me }
        );
        let s = suspects.of(&host).unwrap();
        let text = describe(&Outlook::FailingOver { to: me }, "kv", &s);
        assert!(
            text.starts_with("host unreachable 2.1 s, failing over to "),
            "{text}"
        );
    }

    #[test]
    fn a_drain_of_a_dead_host_reports_each_vessel_moved_failing_over_or_why_not() {
        let [host, r, w, me] = [(); 4].map(|_| PeerId::random());
        let suspects = Suspects::default();
        suspect(&suspects, &[host], 4.0);
        let s = suspects.of(&host).unwrap();
        let leased = status(&[host, r, w], &[r]);
        let lone = StatusVessel {
            id: VesselId([2; 8]),
            name: "lone".into(),
            ..status(&[], &[])
        };
        let vessels = [leased.clone(), lone];
        let report = dead_drain_report(host, &s, &vessels, &[], &suspects, me);
        assert!(!report.done, "{report:?}");
        assert_eq!(report.vessels[0].state, format!("failing over to {r}"));
        assert!(
            report.vessels[1]
                .state
                .starts_with("failed: host unreachable 4.0 s; it cannot fail over: no replica"),
            "{:?}",
            report.vessels[1]
        );
        let row = |node: PeerId, epoch: u64, state: &str| protocol::control::VesselInfo {
            id: leased.id,
            name: "kv".into(),
            node: node.to_string(),
            state: state.into(),
            epoch,
            run_ms: 0,
            migrations: 0,
            exit_code: None,
            reason: String::new(),
            why: String::new(),
            pinned: false,
            checkpoint_age_ms: None,
            checkpoint_problem: None,
            lease: None,
            replicas_wanted: None,
            replicas: Vec::new(),
            replica_age_ms: None,
            replication_problem: None,
            replica_bytes_sent: 0,
            replica_chunks_sent: 0,
            durability: None,
            ports: Vec::new(),
            max_memory_bytes: None,
            restart: None,
            restarts: 0,
        };
        // The dead host's own row, or a fenced one, is no move.
        let not_yet = [row(host, 1, "unreachable"), row(w, 2, "fenced")];
        let report = dead_drain_report(host, &s, &vessels, &not_yet, &suspects, me);
        assert_eq!(report.vessels[0].state, format!("failing over to {r}"));
        let report = dead_drain_report(host, &s, &vessels, &[row(r, 2, "running")], &suspects, me);
        assert_eq!(
            (
                report.vessels[0].state.as_str(),
                report.vessels[0].to.clone()
            ),
            ("moved", Some(r.to_string()))
        );
        assert!(report.done);
        // Past the bound, a takeover that did not come is a failure.
        suspects.publish(std::iter::empty());
        suspect(&suspects, &[host], DRAIN_FAILOVER_BOUND.as_secs_f64() + 1.0);
        let s = suspects.of(&host).unwrap();
        let report = dead_drain_report(host, &s, &vessels, &[], &suspects, me);
        assert!(
            report.vessels[0].state.starts_with("failed: "),
            "{report:?}"
        );
        assert!(report.done);
    }

    #[test]
    fn with_too_few_voters_or_on_a_minority_side_it_says_why_and_names_the_fix() {
        let [host, r, w, me] = [(); 4].map(|_| PeerId::random());
        let suspects = Suspects::default();
        suspect(&suspects, &[host], 5.0);
        let two_nodes = status(&[], &[me]);
        let o = judge(&two_nodes, host, &suspects, me);
        assert_eq!(
            o,
            Outlook::TooFewVoters {
                voters: 0,
                replica: me
            }
        );
        let text = describe(&o, "kv", &suspects.of(&host).unwrap());
        assert!(text.contains("it has no lease"), "{text}");
        assert!(
            text.ends_with(&format!("meshnode recover kv --on {me} --force")),
            "{text}"
        );
        suspect(&suspects, &[host, w], 5.0);
        let cut_off = status(&[host, r, w], &[r]);
        let o = judge(&cut_off, host, &suspects, r);
        assert_eq!(
            o,
            Outlook::Minority {
                reached: 1,
                voters: 3,
                replica: Some(r)
            }
        );
        let text = describe(&o, "kv", &suspects.of(&host).unwrap());
        assert!(text.contains("reaches 1 of its 3 voters"), "{text}");
        assert!(text.contains("--force"), "{text}");
        assert_eq!(
            judge(&status(&[host, r, w], &[]), host, &suspects, r),
            Outlook::NoReplica
        );
    }
}

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

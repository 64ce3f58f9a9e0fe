//! Deploy clashes (issue 16): a deployment whose name or service port a
//! live vessel of the mesh holds already is refused, naming that vessel.
//! A second vessel of the same name would make the name ambiguous for
//! every later command; a second vessel on a port would have the mesh's
//! entries carry that port's clients to one of the two, silently.
//!
//! Checked twice: on the node the CLI talks to, against the whole mesh's
//! `ps` (every node it knows), and again on the node that runs the vessel,
//! under its host's lock, against the vessels there (two deploys racing
//! through the same node cannot both pass there).

use protocol::control::VesselInfo;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::DeploymentBody;

/// Whether a vessel in this `ps` state still holds its name and ports:
/// every state but an end (`exited`, `stopped`, `failed: …`) or a copy
/// that another node's newer epoch superseded (`left`, `fenced`). A
/// vessel whose host is unreachable or down still holds them: it may run
/// again, there or on a replica.
pub fn holds_claims(state: &str) -> bool {
    !(matches!(state, "exited" | "stopped" | "left" | "fenced") || state.starts_with("failed"))
}

/// Refuses `body` if a live vessel among `rows` (other than itself) has
/// its name (`name-taken`) or serves one of its ports (`port-taken`).
pub fn check_clashes(rows: &[VesselInfo], body: &DeploymentBody) -> Result<(), Refusal> {
    let live = rows
        .iter()
        .filter(|r| r.id != body.vessel && holds_claims(&r.state));
    for r in live {
        if r.name == body.name {
            return Err(Refusal::new(
                RefusalCode::NameTaken,
                format!(
                    "the name `{}` is taken: vessel {} ({}) on {}; stop it first (`meshnode stop {}`), or choose another --name",
                    body.name, r.id, r.state, r.node, r.id
                ),
            ));
        }
        if let Some(port) = body.ports.iter().find(|p| r.ports.contains(p)) {
            return Err(Refusal::new(
                RefusalCode::PortTaken,
                format!(
                    "port {port} is taken: vessel {} `{}` ({}) on {} serves it; stop it first (`meshnode stop {}`), or choose another --port",
                    r.id, r.name, r.state, r.node, r.id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use protocol::snapshot::Hash;
    use protocol::vessel::{VesselId, VESSEL_VERSION};

    use super::*;

    pub(crate) fn row(n: u8, name: &str, state: &str, ports: &[u16]) -> VesselInfo {
        VesselInfo {
            id: VesselId([n; 8]),
            name: name.into(),
            node: "12D3KooWnode".into(),
            state: state.into(),
            epoch: 1,
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
            ports: ports.to_vec(),
            max_memory_bytes: None,
            restart: None,
            restarts: 0,
        }
    }

    fn body(name: &str, ports: &[u16]) -> DeploymentBody {
        DeploymentBody {
            version: VESSEL_VERSION,
            vessel: VesselId([9; 8]),
            name: name.into(),
            module_hash: Hash::of(b"m"),
            args: Vec::new(),
            env: Vec::new(),
            volumes: Vec::new(),
            mounts: Vec::new(),
            ports: ports.to_vec(),
            checkpoint_every_ms: None,
            replicas: None,
            durability: None,
            max_memory_bytes: None,
            restart: None,
        }
    }

    #[test]
    fn a_live_vessel_holds_its_name_and_ports_and_an_ended_one_does_not() {
        let rows = [
            row(1, "kv", "running", &[7000]),
            row(2, "old", "exited", &[7001]),
            row(3, "gone", "failed: trap", &[]),
            row(4, "far", "unreachable", &[7002]),
        ];
        let e = check_clashes(&rows, &body("kv", &[])).unwrap_err();
        assert_eq!(e.code, RefusalCode::NameTaken);
        assert!(e.detail.contains("0101010101010101"), "{e}");
        let e = check_clashes(&rows, &body("web", &[8000, 7000])).unwrap_err();
        assert_eq!(e.code, RefusalCode::PortTaken);
        assert!(
            e.detail.contains("port 7000") && e.detail.contains("`kv`"),
            "{e}"
        );
        // A silent host's vessel may run again: it keeps its claims.
        let e = check_clashes(&rows, &body("far", &[])).unwrap_err();
        assert_eq!(e.code, RefusalCode::NameTaken);
        // Ended vessels free their name and ports.
        check_clashes(&rows, &body("old", &[7001])).unwrap();
        check_clashes(&rows, &body("gone", &[])).unwrap();
    }

    #[test]
    fn a_deployment_does_not_clash_with_itself() {
        let mut me = row(9, "kv", "running", &[7000]);
        me.id = VesselId([9; 8]);
        check_clashes(&[me], &body("kv", &[7000])).unwrap();
    }
}

//! `meshnode rm` (issue 16): remove an ended vessel and its logs for good.
//! The CLI finds the vessel in `ps`, refuses one that still runs, and
//! signs a tombstone (`protocol::vessel::Tombstone`) with the user key one
//! epoch above the one the vessel ended under; the node does the rest
//! (`mesh::remove`).

use anyhow::{bail, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse};
use protocol::vessel::{Tombstone, TombstoneBody, VESSEL_VERSION};

use super::cli::NodeTarget;
use super::tables::is_ended;
use super::vessel_cli::Client;

#[derive(Args, Debug)]
pub struct RmArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The vessel: id, id prefix or name, as `meshnode ps -a` lists it. It
    /// must have ended (stopped, exited, trapped, failed): stop a running
    /// one first with `meshnode stop`.
    pub vessel: String,
}

/// `meshnode rm VESSEL`.
pub fn run_rm(args: RmArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let ControlResponse::Vessels(rows) = client.call(Command::Ps)? else {
        bail!("unexpected answer to `ps`");
    };
    let items = rows.iter().map(|r| (r.id, r.name.as_str()));
    let Some(id) = crate::vessel::find_in(items, &args.vessel) else {
        bail!(
            "no vessel `{}` in the mesh (or the name is ambiguous): give its name, id or id prefix, as `meshnode ps -a` lists them",
            args.vessel
        );
    };
    let row = rows.iter().find(|r| r.id == id).expect("found");
    if !is_ended(&row.state) {
        bail!(
            "vessel {} ({id}) is {}, not ended: `meshnode stop {}` first, then `meshnode rm {}`",
            row.name,
            row.state,
            args.vessel,
            args.vessel
        );
    }
    let body = TombstoneBody {
        version: VESSEL_VERSION,
        vessel: id,
        epoch: row.epoch.saturating_add(1),
        removed_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let tombstone = Tombstone::sign(client.user_key(), body);
    client.call(Command::Rm {
        tombstone: Box::new(tombstone),
    })?;
    eprintln!("meshnode: removed {} ({id}) and its logs", row.name);
    Ok(0)
}

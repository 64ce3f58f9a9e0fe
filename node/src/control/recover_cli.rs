//! `meshnode recover VESSEL --on PEER --force` (issue 15): the user runs a
//! vessel on one of its replicas when the mesh cannot decide to (fewer
//! than 3 voters, or a minority partition). The node side is
//! `mesh::force`; the risk is in `meshnode recover --help`.

use anyhow::{bail, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse};

use super::cli::{out, NodeTarget};
use super::vessel_cli::Client;

#[derive(Args, Debug)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The vessel: id, id prefix or name (as `meshnode ps` lists it).
    pub vessel: String,
    /// The member that runs it: its name, its PeerId or a unique prefix of
    /// it (as `meshnode peers` lists them), or `self`.
    /// It must hold a replica of the vessel (`meshnode ps` names them).
    #[arg(long, value_name = "PEER")]
    pub on: String,
    /// Accept the risk described above: without it nothing is done.
    #[arg(long)]
    pub force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `meshnode recover`.
pub fn run_recover(args: RecoverArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let on = client.node_arg(&args.on)?;
    let ControlResponse::Recovered(r) = client.call(Command::Recover {
        vessel: args.vessel.clone(),
        on,
        force: args.force,
    })?
    else {
        bail!("unexpected answer to `recover`");
    };
    if args.json {
        return out(serde_json::json!({
            "vessel": r.vessel.to_hex(),
            "node": r.node,
            "epoch": r.epoch,
            "from_epoch": r.from_epoch,
            "from_host": r.from_host,
            "checkpoint_age_ms": r.checkpoint_age_ms,
        }))
        .map(|()| 0);
    }
    let age = r
        .checkpoint_age_ms
        .map_or("of unknown age".to_string(), |ms| {
            format!("{:.1} s old", ms as f64 / 1000.0)
        });
    out(format_args!(
        "{} runs on {} at epoch {}, from its checkpoint of epoch {} (received {age}); \
         {} will be fenced when it is heard from again",
        r.vessel, r.node, r.epoch, r.from_epoch, r.from_host
    ))?;
    Ok(0)
}

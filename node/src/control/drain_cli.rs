//! The `meshnode undrain` subcommand: ends a node's drain without a
//! restart. (`drain` itself is in `vessel_cli`.)

use anyhow::{bail, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse};

use super::cli::{out, NodeTarget};
use super::vessel_cli::{drain_json, Client};

#[derive(Args, Debug)]
pub struct UndrainArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print the drain's last report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The node whose drain ends: a PeerId from `meshnode peers`, or
    /// `self` for the node this command talks to.
    #[arg(value_name = "NODE")]
    pub drained: String,
}

/// `meshnode undrain`.
pub fn run_undrain(args: UndrainArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let ControlResponse::Drain(report) = client.call(Command::Undrain {
        node: args.drained.clone(),
    })?
    else {
        bail!("unexpected answer to `undrain`");
    };
    if args.json {
        out(drain_json(&report))?;
        return Ok(0);
    }
    eprintln!(
        "meshnode: undrained {}: placement may put vessels on it again",
        report.node
    );
    for i in &report.vessels {
        match (i.state.as_str(), &i.to) {
            ("moved", Some(to)) => out(format_args!("{} {} -> {to}", i.id, i.name))?,
            (state, _) => out(format_args!("{} {} {state}", i.id, i.name))?,
        }
    }
    Ok(0)
}

/// A drain status refused `not-draining` while `drain` followed it: the
/// drain was ended by `meshnode undrain`; says so, with what had moved.
pub(super) fn undrained_meanwhile(
    status: Result<ControlResponse>,
    last: &protocol::control::DrainReport,
) -> Result<ControlResponse> {
    let refused = match &status {
        Err(e) => match e.downcast_ref::<super::client::ClientError>() {
            Some(super::client::ClientError::Refused(r)) => r.code,
            _ => return status,
        },
        Ok(_) => return status,
    };
    if refused != protocol::refusal::RefusalCode::NotDraining {
        return status;
    }
    let moved = last.vessels.iter().filter(|i| i.state == "moved").count();
    bail!(
        "the drain of {} was ended by `meshnode undrain` after {moved} of {} vessel(s) moved; the rest stay",
        last.node,
        last.vessels.len()
    )
}

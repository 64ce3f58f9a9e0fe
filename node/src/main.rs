use clap::Parser;
use meshnode::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cli::run(args),
        Command::Rewrite(args) => cli::rewrite(args),
        Command::Resume(args) => cli::resume(args),
        Command::Start(args) => meshnode::daemon::run_start(args),
        Command::Peers(args) => meshnode::control::cli::run_peers(args),
        Command::Keygen(args) => meshnode::control::cli::run_keygen(args),
        Command::Invite(args) => meshnode::control::cli::run_invite(args),
        Command::Trust(args) => meshnode::control::cli::run_trust(args),
        Command::Revoke(args) => meshnode::control::cli::run_revoke(args),
        Command::Endorse(args) => meshnode::control::cli::run_endorse(args),
        Command::Demo(args) => meshnode::demo::run_demo(args),
        Command::Deploy(args) => meshnode::control::vessel_cli::run_deploy(args),
        Command::Ps(args) => meshnode::control::vessel_cli::run_ps(args),
        Command::Logs(args) => meshnode::control::vessel_cli::run_logs(args),
        Command::Migrate(args) => meshnode::control::vessel_cli::run_migrate(args),
        Command::Stop(args) => meshnode::control::vessel_cli::run_stop(args),
        Command::Checkpoint(args) => meshnode::control::vessel_cli::run_checkpoint(args),
        Command::Pin(args) => meshnode::control::vessel_cli::run_pin(args, true),
        Command::Unpin(args) => meshnode::control::vessel_cli::run_pin(args, false),
        Command::Drain(args) => meshnode::control::vessel_cli::run_drain(args),
        Command::Recover(args) => meshnode::control::recover_cli::run_recover(args),
        Command::Undrain(args) => meshnode::control::drain_cli::run_undrain(args),
        Command::Status(args) => meshnode::control::status_cli::run_status(args),
        Command::Dashboard(args) => meshnode::control::status_cli::run_dashboard(args),
        Command::Upgrade(args) => meshnode::control::upgrade_cli::run_upgrade(args),
        Command::Rm(args) => meshnode::control::rm_cli::run_rm(args),
        Command::Volumes(args) => meshnode::control::volume_cli::run_volumes(args),
        Command::Cp(args) => meshnode::control::volume_cli::run_cp(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("meshnode: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// message before it already contains (typed errors often include their
/// source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

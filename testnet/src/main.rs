//! `testnet run SCENARIO.toml`: many meshnode processes on one machine over
//! an emulated WAN (docs/testnet.md). `testnet check SCENARIO.toml` only
//! reads and checks the file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use testnet::run::{self, Options, Outcome, EXIT_ERROR};

#[derive(Parser)]
#[command(
    name = "testnet",
    version,
    about = "Many meshnode processes on one machine over an emulated WAN",
    long_about = "Runs a scenario: real `meshnode start` processes, each in its own network namespace, \
joined by links that a router in this process emulates (latency, jitter, loss, bandwidth; seeded). \
Needs root. Exit codes: 0 every assertion passed, 1 one failed, 2 bad input, a program that does not compile, or a setup failure, \
77 this machine cannot run it (skipped, with the reason), 130 interrupted."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario and write report.md, timeline.svg and samples.csv.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Output directory (default: ./testnet-out/NAME). Emptied first, if
        /// it is one testnet wrote.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Seed for the links' random streams (default: the scenario's).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// The meshnode binary (default: $MESHNODE_BIN, next to testnet, or on PATH).
        #[arg(long, value_name = "PATH")]
        meshnode: Option<PathBuf>,
        /// Only the final line on stdout (progress still goes to progress.log).
        #[arg(long, short)]
        quiet: bool,
    },
    /// Read and check a scenario, print what it would do, run nothing.
    Check { scenario: PathBuf },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Check { scenario } => match testnet::scenario::Scenario::load(&scenario) {
            Ok(sc) => {
                print!("{}", testnet::report::plan(&sc));
                0
            }
            Err(e) => {
                eprintln!("testnet: {e}");
                EXIT_ERROR
            }
        },
        Cmd::Run {
            scenario,
            out,
            seed,
            meshnode,
            quiet,
        } => {
            let opts = Options {
                out,
                seed,
                meshnode,
                quiet,
            };
            let outcome = run::run(&scenario, &opts);
            match &outcome {
                Outcome::Skipped(why) => eprintln!("testnet: skipped: {why}"),
                Outcome::Error(e) => eprintln!("testnet: {e}"),
                _ => {}
            }
            outcome.code()
        }
    };
    std::process::exit(code);
}

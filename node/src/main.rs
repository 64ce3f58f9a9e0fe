use clap::Parser;
use meshnode::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cli::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One line: what failed and why.
            eprintln!("meshnode: {e:#}");
            std::process::exit(1);
        }
    }
}

//! `testnet` will run many meshnode processes in network namespaces over an
//! emulated WAN (issue 5). Until then it says so instead of pretending.

fn main() {
    eprintln!("testnet: scenarios are not implemented yet (issue 5); nothing was run");
    std::process::exit(2);
}

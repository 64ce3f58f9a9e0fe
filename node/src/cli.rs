//! The `meshnode` command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::dock::wasi::{DirMapping, WasiCtx, WasiOptions};
use crate::dock::{self, DockConfig, Exit, Vessel};

#[derive(Parser, Debug)]
#[command(
    name = "meshnode",
    version,
    about = "Run unmodified WASI programs across a fleet of small machines, and move them while they run.",
    long_about = "meshnode runs WebAssembly (WASI preview1) programs as vessels in a wasmi-based dock.\n\
                  \n\
                  Try it: `meshnode run examples/hello.wasm` (see README.md to build the example)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a WASI command module here, in the foreground.
    ///
    /// Options come before the module; everything after the module is passed
    /// to the program as its arguments. stdin, stdout and stderr are this
    /// process's own. meshnode exits with the program's exit code; a trap
    /// exits with 134 and one line on stderr naming the trap.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Preopen a host directory for the program, as HOST or HOST::GUEST
    /// (the guest sees it at GUEST, or at HOST when GUEST is left out).
    /// Repeatable. The program can never reach outside these directories.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,

    /// Set an environment variable for the program, as KEY=VALUE, or KEY to
    /// pass this process's value of KEY. Repeatable. The program sees no
    /// other variables.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub envs: Vec<String>,

    /// Cap on the program's linear memory, e.g. 64MiB, 1GiB or a number of
    /// bytes. Growing past it fails inside the program (malloc returns NULL).
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    pub max_memory: usize,

    /// Cap on the wasm call depth, in frames. A deeper recursion traps with
    /// "call stack exhausted".
    #[arg(long, value_name = "FRAMES", default_value_t = dock::DEFAULT_MAX_CALL_DEPTH)]
    pub max_call_depth: usize,

    /// Cap on the interpreter's value stack, e.g. 256MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_value_stack: usize,

    /// Instructions (fuel units) per slice. Between slices the dock can
    /// schedule other vessels and take snapshots.
    #[arg(long, value_name = "FUEL", default_value_t = dock::DEFAULT_FUEL_SLICE, value_parser = clap::value_parser!(u64).range(1..))]
    pub fuel_slice: u64,

    /// Run without fuel metering (not preemptible). Only for measuring what
    /// fuel slicing costs.
    #[arg(long)]
    pub no_fuel: bool,

    /// The WASI command module (.wasm) to run.
    pub module: PathBuf,

    /// Arguments passed to the program.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Parses `512MiB`, `1GiB`, `64KiB`, `1.5GiB`, or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_bytes: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit `{other}` in `{s}` (use KiB, MiB or GiB)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size (try 512MiB)"))?;
    let bytes = n * unit_bytes;
    if !(0.0..=(usize::MAX as f64)).contains(&bytes) {
        return Err(format!("`{s}` is too large"));
    }
    Ok(bytes as usize)
}

fn parse_dir(spec: &str) -> Result<DirMapping> {
    let (host, guest) = match spec.split_once("::") {
        Some((h, g)) => (h, g),
        None => (spec, spec),
    };
    if host.is_empty() || guest.is_empty() {
        bail!("--dir {spec}: expected HOST or HOST::GUEST");
    }
    let host = PathBuf::from(host);
    if !host.is_dir() {
        bail!("--dir {spec}: {} is not a directory", host.display());
    }
    Ok(DirMapping { host, guest: guest.to_string() })
}

fn parse_env(spec: &str) -> Result<Vec<u8>> {
    match spec.split_once('=') {
        Some((k, _)) if k.is_empty() => bail!("--env {spec}: the variable name is empty"),
        Some(_) => Ok(spec.as_bytes().to_vec()),
        None => match std::env::var_os(spec) {
            Some(v) => {
                use std::os::unix::ffi::OsStrExt;
                let mut kv = spec.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                Ok(kv)
            }
            None => bail!("--env {spec}: not set in this environment (use KEY=VALUE)"),
        },
    }
}

/// `meshnode run`: returns the process exit code.
pub fn run(args: RunArgs) -> Result<i32> {
    let config = DockConfig {
        max_memory_bytes: args.max_memory,
        max_call_depth: args.max_call_depth,
        max_value_stack_bytes: args.max_value_stack,
        fuel_slice: if args.no_fuel { None } else { Some(args.fuel_slice) },
    };
    let dirs = args.dirs.iter().map(|d| parse_dir(d)).collect::<Result<Vec<_>>>()?;
    let env = args.envs.iter().map(|e| parse_env(e)).collect::<Result<Vec<_>>>()?;
    let mut argv = vec![args.module.to_string_lossy().as_bytes().to_vec()];
    argv.extend(args.args.iter().map(|a| a.as_bytes().to_vec()));

    let engine = config.engine();
    let module = dock::load_module(&engine, &args.module)?;
    let wasi = WasiCtx::new(WasiOptions { args: argv, env, dirs, stdio: Default::default() })
        .with_context(|| format!("{}: cannot set up the program's environment", args.module.display()))?;
    let mut vessel = Vessel::new(&engine, &module, wasi, &config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.module.display()))?;
    match vessel.run_to_end() {
        Exit::Code(code) => Ok(code as i32),
        Exit::Trap(msg) => {
            eprintln!("meshnode: {}: wasm trap: {msg}", args.module.display());
            Ok(134)
        }
    }
}

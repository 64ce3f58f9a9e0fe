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

    /// Instrument a module with migration points (what the dock does before
    /// it runs a vessel), and write the result.
    ///
    /// The output is deterministic: the same input always gives the same
    /// bytes. A module that uses a feature the rewriter does not support is
    /// refused with an error naming the feature and the function.
    Rewrite(RewriteArgs),
}

#[derive(Args, Debug)]
pub struct RewriteArgs {
    /// The module to instrument.
    pub input: PathBuf,

    /// Where to write the instrumented module.
    #[arg(short, long, value_name = "OUT.wasm")]
    pub output: PathBuf,

    /// Print what was done: functions instrumented out of the total,
    /// migration points, and the code-size ratio.
    #[arg(long)]
    pub stats: bool,
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

/// `meshnode rewrite`.
pub fn rewrite(args: RewriteArgs) -> Result<i32> {
    let bytes = read_module_bytes(&args.input)?;
    let out = wasm_rewriter::rewrite(&bytes, &wasm_rewriter::RewriteConfig::default())
        .with_context(|| format!("{}: cannot instrument", args.input.display()))?;
    std::fs::write(&args.output, &out.wasm).with_context(|| format!("{}: cannot write", args.output.display()))?;
    if args.stats {
        let r = &out.report;
        let ratio = |after: u64, before: u64| if before == 0 { 1.0 } else { after as f64 / before as f64 };
        println!("functions instrumented: {} of {}", r.functions_instrumented, r.functions_total);
        println!("migration points:       {}", r.migration_points);
        println!(
            "code section:           {} -> {} bytes ({:.3}x)",
            r.code_section_bytes_before,
            r.code_section_bytes_after,
            ratio(r.code_section_bytes_after, r.code_section_bytes_before)
        );
        println!(
            "whole module:           {} -> {} bytes ({:.3}x)",
            bytes.len(),
            out.wasm.len(),
            ratio(out.wasm.len() as u64, bytes.len() as u64)
        );
    }
    Ok(0)
}

/// Reads a module file with the dock's size limit and magic check.
fn read_module_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    Ok(dock::read_module_file(path)?)
}

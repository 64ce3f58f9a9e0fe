//! The dock: runs vessels (WASI command modules) in wasmi, in fuel slices.
//!
//! - [`DockConfig`]: the engine's limits (memory, call depth, value stack)
//!   and the fuel slice length, each with a named default.
//! - [`load_module`]: reads and checks a module, with an error that names the
//!   file and the reason.
//! - [`Vessel`]: one instantiated program. [`Vessel::run_slice`] runs it for
//!   one fuel slice; between slices the dock may inspect it, swap its WASI
//!   context, or stop it.
//! - [`spawn`]: runs a vessel to completion on a worker thread of its own, so
//!   that CPU-bound vessels never stall the node's async work.

pub mod wasi;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use wasmi::{
    Config, Engine, Extern, Func, Linker, Memory, Module, ResumableCall, ResumableCallOutOfFuel, Store,
    StoreLimits, StoreLimitsBuilder,
};

use self::wasi::{WasiCtx, WasiView};

/// Default cap on a vessel's linear memory. Small boards have 1–8 GiB; one
/// vessel should not be able to take most of a 1 GiB Pi.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// Default cap on wasm call depth, in frames. wasmi's own default (1,000)
/// stops C programs that wasmtime and Node run: they recurse a few thousand
/// frames deep. 100,000 frames cover deep-recursion programs and the larger
/// frames of rewritten vessels, while a runaway recursion still ends in a
/// clean "call stack exhausted" trap rather than exhausting host memory.
pub const DEFAULT_MAX_CALL_DEPTH: usize = 100_000;

/// Default cap on wasmi's value stack, in bytes. Sized with the call depth:
/// 100,000 frames of a few dozen 8-byte slots each. It is allocated as it is
/// used, so an idle vessel does not pay for it.
pub const DEFAULT_MAX_VALUE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Default fuel per slice. wasmi charges about one unit per instruction, so a
/// slice is a few milliseconds on a Pi-class CPU: short enough that a
/// capture request waits little, long enough that slicing costs almost
/// nothing (docs/benchmarks.md).
pub const DEFAULT_FUEL_SLICE: u64 = 4_000_000;

/// Largest module file the dock reads (see the limit's own comment).
pub const MAX_MODULE_BYTES: u64 = protocol::limits::MAX_MODULE_BYTES;

/// The engine's limits and slicing.
#[derive(Debug, Clone)]
pub struct DockConfig {
    pub max_memory_bytes: usize,
    pub max_call_depth: usize,
    pub max_value_stack_bytes: usize,
    /// Fuel per slice; `None` runs without fuel metering (not preemptible:
    /// only for measuring what slicing costs).
    pub fuel_slice: Option<u64>,
}

impl Default for DockConfig {
    fn default() -> Self {
        DockConfig {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_call_depth: DEFAULT_MAX_CALL_DEPTH,
            max_value_stack_bytes: DEFAULT_MAX_VALUE_STACK_BYTES,
            fuel_slice: Some(DEFAULT_FUEL_SLICE),
        }
    }
}

impl DockConfig {
    /// A wasmi engine with these limits and the features vessels may use.
    pub fn engine(&self) -> Engine {
        let mut c = Config::default();
        // Lazy translation charges a function's translation to the fuel of
        // the slice that first calls it, and running out of fuel there is a
        // trap rather than a resumable stop. Vessels must be preemptible
        // anywhere, so every function is translated before the first slice.
        c.compilation_mode(wasmi::CompilationMode::Eager);
        c.set_max_recursion_depth(self.max_call_depth)
            .set_max_stack_height(self.max_value_stack_bytes)
            .consume_fuel(self.fuel_slice.is_some())
            .wasm_mutable_global(true)
            .wasm_sign_extension(true)
            .wasm_saturating_float_to_int(true)
            .wasm_multi_value(true)
            .wasm_bulk_memory(true)
            .wasm_reference_types(true)
            .wasm_tail_call(false)
            .wasm_extended_const(true)
            .wasm_multi_memory(true);
        Engine::new(&c)
    }
}

/// Why a vessel could not be loaded, started or run.
#[derive(Debug, thiserror::Error)]
pub enum DockError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: is {size_bytes} bytes, over the limit of {limit_bytes} bytes for a module")]
    TooLarge { path: PathBuf, size_bytes: u64, limit_bytes: u64 },
    #[error("{path}: not a WebAssembly module (it does not start with \\0asm)")]
    NotWasm { path: PathBuf },
    #[error("{path}: invalid WebAssembly module: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: imports {module}.{name} ({kind}), which meshnode does not provide")]
    UnknownImport { path: PathBuf, module: String, name: String, kind: &'static str },
    #[error("{path}: has no `_start` function to run (it is not a WASI command module)")]
    NoStart { path: PathBuf },
    #[error("cannot set up WASI: {0}")]
    Wasi(#[from] wasi::SetupError),
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    #[error("wasm trap: {0}")]
    Trap(String),
}

/// Reads a module file and checks it: size, magic, validity, and that every
/// import is one the dock provides.
pub fn load_module(engine: &Engine, path: &Path) -> Result<Module, DockError> {
    let bytes = read_module_file(path)?;
    module_from_bytes(engine, path, &bytes)
}

/// Reads a module file: at most `MAX_MODULE_BYTES`, and it must start with
/// the wasm magic.
pub fn read_module_file(path: &Path) -> Result<Vec<u8>, DockError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| DockError::Read { path: path.into(), source })?;
    let size_bytes = file.metadata().map_err(|source| DockError::Read { path: path.into(), source })?.len();
    if size_bytes > MAX_MODULE_BYTES {
        return Err(DockError::TooLarge { path: path.into(), size_bytes, limit_bytes: MAX_MODULE_BYTES });
    }
    let mut bytes = Vec::with_capacity(size_bytes as usize);
    file.read_to_end(&mut bytes).map_err(|source| DockError::Read { path: path.into(), source })?;
    if !bytes.starts_with(b"\0asm") {
        return Err(DockError::NotWasm { path: path.into() });
    }
    Ok(bytes)
}

/// Checks and compiles module bytes; `path` only names them in errors.
pub fn module_from_bytes(engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Module, DockError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(DockError::NotWasm { path: path.into() });
    }
    let module =
        Module::new(engine, bytes).map_err(|e| DockError::Invalid { path: path.into(), reason: e.to_string() })?;
    for import in module.imports() {
        let kind = match import.ty() {
            wasmi::ExternType::Func(_) => "function",
            wasmi::ExternType::Global(_) => "global",
            wasmi::ExternType::Table(_) => "table",
            wasmi::ExternType::Memory(_) => "memory",
        };
        let provided = import.module() == wasi::MODULE && kind == "function" && wasi::FUNCTIONS.contains(&import.name());
        if !provided {
            return Err(DockError::UnknownImport {
                path: path.into(),
                module: import.module().to_string(),
                name: import.name().to_string(),
                kind,
            });
        }
    }
    if !module.exports().any(|e| e.name() == "_start" && matches!(e.ty(), wasmi::ExternType::Func(_))) {
        return Err(DockError::NoStart { path: path.into() });
    }
    Ok(module)
}

/// The store data of one vessel.
pub struct VesselCtx {
    pub wasi: WasiCtx,
    memory: Option<Memory>,
    limits: StoreLimits,
}

impl WasiView for VesselCtx {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
    fn memory(&self) -> Option<Memory> {
        self.memory
    }
}

/// How a vessel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It returned from `_start` (0) or called `proc_exit`.
    Code(u32),
    /// It trapped; the text names the trap.
    Trap(String),
}

/// What one slice did.
#[derive(Debug)]
pub enum Slice {
    /// Out of fuel; the vessel can run another slice.
    Yielded,
    Exited(Exit),
}

/// One instantiated program.
pub struct Vessel {
    store: Store<VesselCtx>,
    entry: Func,
    fuel_slice: Option<u64>,
    pending: Option<ResumableCallOutOfFuel>,
    started: bool,
    slices: u64,
}

impl Vessel {
    pub fn new(engine: &Engine, module: &Module, wasi: WasiCtx, config: &DockConfig) -> Result<Self, DockError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(config.max_memory_bytes)
            .instances(1)
            .build();
        let mut store = Store::new(engine, VesselCtx { wasi, memory: None, limits });
        store.limiter(|ctx| &mut ctx.limits);
        if let Some(fuel) = config.fuel_slice {
            store.set_fuel(fuel).map_err(|e| DockError::Instantiate(e.to_string()))?;
        }
        let mut linker = Linker::new(engine);
        wasi::add_to_linker(&mut linker).map_err(|e| DockError::Instantiate(e.to_string()))?;
        // The start section (if any) runs here, as wasmi always runs it.
        let instance = linker
            .instantiate_and_start(&mut store, module)
            .map_err(|e| classify_error(e, "instantiation"))
            .map_err(|exit| match exit {
                Exit::Trap(t) => DockError::Trap(t),
                Exit::Code(c) => DockError::Instantiate(format!("start function exited with {c}")),
            })?;
        let memory = match instance.get_export(&store, "memory") {
            Some(Extern::Memory(m)) => Some(m),
            _ => None,
        };
        store.data_mut().memory = memory;
        let entry = instance
            .get_func(&store, "_start")
            .ok_or_else(|| DockError::Instantiate("no _start function".into()))?;
        Ok(Vessel { store, entry, fuel_slice: config.fuel_slice, pending: None, started: false, slices: 0 })
    }

    /// Runs until the fuel slice is used up or the program ends.
    pub fn run_slice(&mut self) -> Slice {
        if let Some(fuel) = self.fuel_slice {
            // One operation (a large memory.fill, say) may cost more than a
            // whole slice; give it what it needs, or it could never finish.
            let required = self.pending.as_ref().map_or(0, |call| call.required_fuel());
            if let Err(e) = self.store.set_fuel(fuel.max(required)) {
                return Slice::Exited(Exit::Trap(e.to_string()));
            }
        }
        self.slices += 1;
        let result = match self.pending.take() {
            Some(call) => call.resume(&mut self.store, &mut []),
            None if !self.started => {
                self.started = true;
                self.entry.call_resumable(&mut self.store, &[], &mut [])
            }
            None => return Slice::Exited(Exit::Trap("vessel resumed after it ended".into())),
        };
        match result {
            Ok(ResumableCall::Finished) => Slice::Exited(Exit::Code(0)),
            Ok(ResumableCall::OutOfFuel(call)) => {
                self.pending = Some(call);
                Slice::Yielded
            }
            Ok(ResumableCall::HostTrap(t)) => Slice::Exited(classify_error(t.into_host_error(), "_start")),
            Err(e) => Slice::Exited(classify_error(e, "_start")),
        }
    }

    /// Runs slices until the program ends.
    pub fn run_to_end(&mut self) -> Exit {
        loop {
            if let Slice::Exited(exit) = self.run_slice() {
                return exit;
            }
        }
    }

    pub fn wasi(&self) -> &WasiCtx {
        &self.store.data().wasi
    }

    pub fn wasi_mut(&mut self) -> &mut WasiCtx {
        &mut self.store.data_mut().wasi
    }

    /// Replaces the WASI context between slices (e.g. one rebuilt from a
    /// serialized state against other host directories).
    pub fn replace_wasi(&mut self, wasi: WasiCtx) -> WasiCtx {
        std::mem::replace(&mut self.store.data_mut().wasi, wasi)
    }

    /// How many slices have run.
    pub fn slices(&self) -> u64 {
        self.slices
    }
}

/// Turns a wasmi error into how the vessel ended.
fn classify_error(e: wasmi::Error, during: &str) -> Exit {
    if let Some(code) = e.i32_exit_status() {
        return Exit::Code(code as u32);
    }
    match e.as_trap_code() {
        Some(code) => Exit::Trap(format!("{code} (in {during})")),
        None => Exit::Trap(format!("{e} (in {during})")),
    }
}

/// Runs a vessel to completion on a worker thread of its own.
pub fn spawn(mut vessel: Vessel, name: String) -> std::io::Result<JoinHandle<(Exit, Vessel)>> {
    std::thread::Builder::new().name(format!("vessel-{name}")).spawn(move || {
        let exit = vessel.run_to_end();
        (exit, vessel)
    })
}

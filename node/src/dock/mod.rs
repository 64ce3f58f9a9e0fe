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

pub mod frames;
pub mod fuzzing;
pub mod services;
pub mod snapshot;
mod trap;
pub mod wasi;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use protocol::snapshot::{Entry, Frame, Hash, Value};
use wasmi::{
    Config, Engine, Extern, Func, Global, Instance, Linker, Memory, Module, ResumableCall,
    ResumableCallOutOfFuel, Store, StoreLimits, StoreLimitsBuilder, Val,
};

use self::frames::{FrameIo, FrameView};
use self::trap::TrapSite;
use self::wasi::{InputSource, OutputSink, Stdio, WasiCtx, WasiOptions, WasiView};

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
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: is {size_bytes} bytes, over the limit of {limit_bytes} bytes for a module")]
    TooLarge {
        path: PathBuf,
        size_bytes: u64,
        limit_bytes: u64,
    },
    #[error("{path}: not a WebAssembly module (it does not start with \\0asm)")]
    NotWasm { path: PathBuf },
    #[error("{path}: invalid WebAssembly module: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: imports {module}.{name} ({kind}), which meshnode does not provide")]
    UnknownImport {
        path: PathBuf,
        module: String,
        name: String,
        kind: &'static str,
    },
    #[error("{path}: has no `_start` function to run (it is not a WASI command module)")]
    NoStart { path: PathBuf },
    #[error("cannot set up WASI: {0}")]
    Wasi(#[from] wasi::SetupError),
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    #[error("wasm trap: {0}")]
    Trap(String),
    #[error("{path}: cannot make it migratable: {reason}")]
    Rewrite { path: PathBuf, reason: String },
    #[error("cannot capture: {0}")]
    Capture(String),
    #[error("refusing to resume: {0}")]
    Resume(String),
}

/// Reads a module file and checks it: size, magic, validity, and that every
/// import is one the dock provides.
/// The result runs as given (not migratable); see [`VesselModule::prepare`]
/// for the migratable form.
pub fn load_module(engine: &Engine, path: &Path) -> Result<VesselModule, DockError> {
    VesselModule::prepare(engine, path, read_module_file(path)?, Mode::Plain)
}

/// Reads a module file: at most `MAX_MODULE_BYTES`, and it must start with
/// the wasm magic.
pub fn read_module_file(path: &Path) -> Result<Vec<u8>, DockError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| DockError::Read {
        path: path.into(),
        source,
    })?;
    let size_bytes = file
        .metadata()
        .map_err(|source| DockError::Read {
            path: path.into(),
            source,
        })?
        .len();
    if size_bytes > MAX_MODULE_BYTES {
        return Err(DockError::TooLarge {
            path: path.into(),
            size_bytes,
            limit_bytes: MAX_MODULE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(size_bytes as usize);
    file.read_to_end(&mut bytes)
        .map_err(|source| DockError::Read {
            path: path.into(),
            source,
        })?;
    if !bytes.starts_with(b"\0asm") {
        return Err(DockError::NotWasm { path: path.into() });
    }
    Ok(bytes)
}

/// Checks and compiles a module that runs as given (not migratable); `path`
/// only names it in errors.
pub fn module_from_bytes(
    engine: &Engine,
    path: &Path,
    bytes: &[u8],
) -> Result<VesselModule, DockError> {
    VesselModule::prepare(engine, path, bytes.to_vec(), Mode::Plain)
}

/// Compiles `bytes` and checks that every import is one the dock provides
/// (preview1, plus the rewriter's frame imports when `frames` is set) and
/// that there is a `_start` to run.
fn compile_checked(
    engine: &Engine,
    path: &Path,
    bytes: &[u8],
    frames: bool,
) -> Result<Module, DockError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(DockError::NotWasm { path: path.into() });
    }
    let module = Module::new(engine, bytes).map_err(|e| DockError::Invalid {
        path: path.into(),
        reason: e.to_string(),
    })?;
    for import in module.imports() {
        let kind = match import.ty() {
            wasmi::ExternType::Func(_) => "function",
            wasmi::ExternType::Global(_) => "global",
            wasmi::ExternType::Table(_) => "table",
            wasmi::ExternType::Memory(_) => "memory",
        };
        let provided = kind == "function"
            && ((import.module() == wasi::MODULE && wasi::FUNCTIONS.contains(&import.name()))
                || (frames
                    && import.module() == frames::MODULE
                    && wasm_rewriter::abi::IMPORT_NAMES.contains(&import.name())));
        if !provided {
            return Err(DockError::UnknownImport {
                path: path.into(),
                module: import.module().to_string(),
                name: import.name().to_string(),
                kind,
            });
        }
    }
    if !module
        .exports()
        .any(|e| e.name() == "_start" && matches!(e.ty(), wasmi::ExternType::Func(_)))
    {
        return Err(DockError::NoStart { path: path.into() });
    }
    Ok(module)
}

/// How a module is turned into a vessel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exactly as given; cannot be captured (`--no-rewrite`).
    Plain,
    /// Instrumented by the rewriter, so it can be captured at migration
    /// points. `countdown` adds the global that stops at the N-th point.
    Migratable { countdown: bool },
}

/// The rewriter's output for one module.
pub struct Instrumented {
    pub bytes: Vec<u8>,
    pub hash: Hash,
    pub report: wasm_rewriter::Report,
    pub countdown: bool,
}

/// A module ready to instantiate as vessels.
pub struct VesselModule {
    /// The module as deployed (shared with its vessels, which read its name
    /// section when they trap). An `Arc<Vec>` rather than an `Arc<[u8]>`,
    /// which would copy a module of up to `MAX_MODULE_BYTES` at every load.
    pub original: Arc<Vec<u8>>,
    pub original_hash: Hash,
    /// Present when the module was rewritten (migratable).
    pub instrumented: Option<Instrumented>,
    pub module: Module,
}

impl VesselModule {
    /// Checks, instruments (unless `mode` is `Plain`) and compiles a module
    /// for `engine`.
    pub fn prepare(
        engine: &Engine,
        path: &Path,
        original: Vec<u8>,
        mode: Mode,
    ) -> Result<Self, DockError> {
        let (instrumented, original_hash) = instrument(engine, path, &original, mode)?;
        let code = instrumented
            .as_ref()
            .map_or(&original[..], |i| &i.bytes[..]);
        let module = compile_checked(engine, path, code, instrumented.is_some())?;
        Ok(VesselModule {
            original: Arc::new(original),
            original_hash,
            instrumented,
            module,
        })
    }

    /// Like [`prepare`](Self::prepare), but also builds the engine: the
    /// value-stack budget is scaled by the rewriter's estimate of how much
    /// bigger instrumented frames are, so that a migratable vessel recurses
    /// as deep as the original would. Returns the engine, the config it was
    /// built from, and the module.
    pub fn prepare_with_engine(
        config: &DockConfig,
        path: &Path,
        original: Vec<u8>,
        mode: Mode,
    ) -> Result<(Engine, DockConfig, Self), DockError> {
        let probe = config.engine();
        let (instrumented, original_hash) = instrument(&probe, path, &original, mode)?;
        let mut config = config.clone();
        if let Some(i) = &instrumented {
            let factor = i.report.value_stack_factor_percent.max(100) as usize;
            config.max_value_stack_bytes =
                config.max_value_stack_bytes.saturating_mul(factor) / 100;
        }
        let engine = config.engine();
        let code = instrumented
            .as_ref()
            .map_or(&original[..], |i| &i.bytes[..]);
        let module = compile_checked(&engine, path, code, instrumented.is_some())?;
        Ok((
            engine,
            config,
            VesselModule {
                original: Arc::new(original),
                original_hash,
                instrumented,
                module,
            },
        ))
    }
}

/// Runs the rewriter (for `Migratable`); errors on an invalid module are
/// the same as in plain mode.
fn instrument(
    engine: &Engine,
    path: &Path,
    original: &[u8],
    mode: Mode,
) -> Result<(Option<Instrumented>, Hash), DockError> {
    if !original.starts_with(b"\0asm") {
        return Err(DockError::NotWasm { path: path.into() });
    }
    let original_hash = Hash::of(original);
    let Mode::Migratable { countdown } = mode else {
        return Ok((None, original_hash));
    };
    let config = wasm_rewriter::RewriteConfig {
        countdown,
        ..Default::default()
    };
    let out = wasm_rewriter::rewrite(original, &config).map_err(|e| match e {
        // A module that is not valid wasm gets the plain-mode error, which
        // names what is wrong (bad magic, truncation, unknown import).
        wasm_rewriter::RewriteError::Invalid { .. } => {
            match compile_checked(engine, path, original, false) {
                Err(plain) => plain,
                Ok(_) => DockError::Rewrite {
                    path: path.into(),
                    reason: e.to_string(),
                },
            }
        }
        other => DockError::Rewrite {
            path: path.into(),
            reason: other.to_string(),
        },
    })?;
    let hash = Hash::of(&out.wasm);
    Ok((
        Some(Instrumented {
            bytes: out.wasm,
            hash,
            report: out.report,
            countdown,
        }),
        original_hash,
    ))
}

/// The store data of one vessel.
pub struct VesselCtx {
    pub wasi: WasiCtx,
    memory: Option<Memory>,
    limits: StoreLimits,
    frames: FrameIo,
}

impl WasiView for VesselCtx {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
    fn memory(&self) -> Option<Memory> {
        self.memory
    }
    fn rewind_reissued(&mut self) -> Result<(), wasmi::Error> {
        self.frames
            .check_rewind_done()
            .map_err(|e| wasmi::Error::new(e.to_string()))
    }
}

impl FrameView for VesselCtx {
    fn frames(&mut self) -> &mut FrameIo {
        &mut self.frames
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
    /// It unwound at a migration point, as asked: [`Vessel::capture`] now
    /// takes its state. It cannot run on until it is resumed from that.
    Unwound,
    Exited(Exit),
}

/// Where a vessel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next slice calls this entry.
    Call(Entry),
    /// A call of this entry is in progress (paused out of fuel).
    Running(Entry),
    /// Unwound, waiting to be captured.
    Unwound(Entry),
    Ended,
    /// Instantiated by [`Vessel::blank`], its memory being filled: it runs
    /// only once [`Vessel::resume_blank`] has restored the rest.
    Blank,
}

/// The exports through which the dock drives an instrumented vessel.
struct Controls {
    state: Global,
    countdown: Option<Global>,
    globals: Vec<Global>,
    data_dropped: Option<Global>,
    redrop: Option<Func>,
}

/// A captured vessel, in memory: everything but the module.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub memory: Vec<u8>,
    pub globals: Vec<Value>,
    pub data_dropped: u64,
    pub entry: Entry,
    /// Outermost first.
    pub frames: Vec<Frame>,
    pub wasi: protocol::wasi::WasiState,
    /// Migration points passed since the vessel first started.
    pub points_passed: u64,
}

/// One instantiated program.
pub struct Vessel {
    store: Store<VesselCtx>,
    instance: Instance,
    start: Option<Func>,
    main: Func,
    controls: Option<Controls>,
    fuel_slice: Option<u64>,
    pending: Option<ResumableCallOutOfFuel>,
    phase: Phase,
    slices: u64,
    /// Names the function a trap happens in.
    trap_site: TrapSite,
    /// The instrumented module it was instantiated from (None: plain).
    module: Option<Hash>,
}

impl Vessel {
    /// Instantiates a fresh vessel; its first slice calls the start function
    /// (if the rewriter moved one out) and then `_start`.
    pub fn new(
        engine: &Engine,
        vm: &VesselModule,
        wasi: WasiCtx,
        config: &DockConfig,
    ) -> Result<Self, DockError> {
        let mut v = Self::instantiate(engine, vm, wasi, config)?;
        v.phase = Phase::Call(if v.start.is_some() {
            Entry::Start
        } else {
            Entry::Main
        });
        Ok(v)
    }

    fn instantiate(
        engine: &Engine,
        vm: &VesselModule,
        wasi: WasiCtx,
        config: &DockConfig,
    ) -> Result<Self, DockError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(config.max_memory_bytes)
            .instances(1)
            .build();
        let frames = FrameIo::new(config.max_call_depth);
        let mut store = Store::new(
            engine,
            VesselCtx {
                wasi,
                memory: None,
                limits,
                frames,
            },
        );
        store.limiter(|ctx| &mut ctx.limits);
        if let Some(fuel) = config.fuel_slice {
            store
                .set_fuel(fuel)
                .map_err(|e| DockError::Instantiate(e.to_string()))?;
        }
        let mut linker = Linker::new(engine);
        wasi::add_to_linker(&mut linker).map_err(|e| DockError::Instantiate(e.to_string()))?;
        frames::add_to_linker(&mut linker).map_err(|e| DockError::Instantiate(e.to_string()))?;
        let trap_site = TrapSite::new(&vm.module, &vm.original, vm.instrumented.is_some());
        // A plain module's start section runs here, as wasmi always runs it;
        // the rewriter has moved an instrumented module's into an export.
        let instance = linker
            .instantiate_and_start(&mut store, &vm.module)
            .map_err(
                |e| match classify_error(e, "the start function", &trap_site) {
                    Exit::Trap(t) => DockError::Trap(t),
                    Exit::Code(c) => {
                        DockError::Instantiate(format!("the start function exited with {c}"))
                    }
                },
            )?;
        let memory = match instance.get_export(&store, "memory") {
            Some(Extern::Memory(m)) => Some(m),
            _ => None,
        };
        store.data_mut().memory = memory;
        let main = instance
            .get_func(&store, "_start")
            .ok_or_else(|| DockError::Instantiate("no _start function".into()))?;
        let controls = match &vm.instrumented {
            None => None,
            Some(_) => {
                use wasm_rewriter::abi;
                let global = |name: &str| instance.get_global(&store, name);
                let state = global(abi::STATE_EXPORT).ok_or_else(|| {
                    DockError::Instantiate(format!("no {} export", abi::STATE_EXPORT))
                })?;
                let mut globals = Vec::new();
                while let Some(g) =
                    global(&format!("{}{}", abi::GLOBAL_EXPORT_PREFIX, globals.len()))
                {
                    globals.push(g);
                }
                Some(Controls {
                    state,
                    countdown: global(abi::COUNTDOWN_EXPORT),
                    globals,
                    data_dropped: global(abi::DATA_DROPPED_EXPORT),
                    redrop: instance.get_func(&store, abi::REDROP_EXPORT),
                })
            }
        };
        let start = instance.get_func(&store, wasm_rewriter::abi::START_EXPORT);
        Ok(Vessel {
            store,
            instance,
            start,
            main,
            controls,
            fuel_slice: config.fuel_slice,
            pending: None,
            phase: Phase::Ended,
            slices: 0,
            trap_site,
            module: vm.instrumented.as_ref().map(|i| i.hash),
        })
    }

    fn entry_func(&self, entry: Entry) -> Func {
        match entry {
            Entry::Start => self.start.unwrap_or(self.main),
            Entry::Main => self.main,
        }
    }

    fn state(&self) -> i32 {
        self.controls
            .as_ref()
            .map_or(0, |c| c.state.get(&self.store).i32().unwrap_or(0))
    }

    fn set_state(&mut self, v: i32) {
        if let Some(c) = &self.controls {
            // The global is the rewriter's mutable i32; a type error here
            // would be a rewriter bug, caught by the pair assertions.
            let _ = c.state.set(&mut self.store, Val::I32(v));
        }
    }

    /// Runs until the fuel slice is used up, the program ends, or it unwinds.
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
        let (entry, result) = match (self.phase, self.pending.take()) {
            (Phase::Running(entry), Some(call)) => (entry, call.resume(&mut self.store, &mut [])),
            (Phase::Call(entry), None) => {
                self.phase = Phase::Running(entry);
                let f = self.entry_func(entry);
                (entry, f.call_resumable(&mut self.store, &[], &mut []))
            }
            (Phase::Unwound(_), _) => {
                return Slice::Exited(Exit::Trap("vessel run after it unwound".into()))
            }
            (Phase::Blank, _) => {
                return Slice::Exited(Exit::Trap("vessel run before it was resumed".into()))
            }
            _ => return Slice::Exited(Exit::Trap("vessel run after it ended".into())),
        };
        let during = match entry {
            Entry::Start => "the start function",
            Entry::Main => "_start",
        };
        match result {
            Ok(ResumableCall::OutOfFuel(call)) => {
                self.pending = Some(call);
                if let Err(e) = self.check_rewind_if_done() {
                    self.phase = Phase::Ended;
                    return Slice::Exited(Exit::Trap(e));
                }
                Slice::Yielded
            }
            Ok(ResumableCall::Finished) => {
                let state = self.state();
                if state == wasm_rewriter::abi::STATE_UNWINDING {
                    self.phase = Phase::Unwound(entry);
                    return Slice::Unwound;
                }
                if state == wasm_rewriter::abi::STATE_REWINDING {
                    self.phase = Phase::Ended;
                    return Slice::Exited(Exit::Trap(
                        "the rewind never reached its migration point: the snapshot does not match the module".into(),
                    ));
                }
                if state == wasm_rewriter::abi::STATE_UNWIND_REQUESTED {
                    self.set_state(wasm_rewriter::abi::STATE_RUNNING);
                }
                if let Err(e) = self.check_rewind_if_done() {
                    self.phase = Phase::Ended;
                    return Slice::Exited(Exit::Trap(e));
                }
                match entry {
                    Entry::Start => {
                        self.phase = Phase::Call(Entry::Main);
                        Slice::Yielded
                    }
                    Entry::Main => {
                        self.phase = Phase::Ended;
                        Slice::Exited(Exit::Code(0))
                    }
                }
            }
            Ok(ResumableCall::HostTrap(t)) => {
                self.phase = Phase::Ended;
                Slice::Exited(classify_error(t.into_host_error(), during, &self.trap_site))
            }
            Err(e) => {
                self.phase = Phase::Ended;
                Slice::Exited(classify_error(e, during, &self.trap_site))
            }
        }
    }

    /// The rewind's pair assertion, checked once the vessel has left the
    /// rewinding state.
    fn check_rewind_if_done(&mut self) -> Result<(), String> {
        if self.store.data().frames.rewinding()
            && self.state() != wasm_rewriter::abi::STATE_REWINDING
        {
            self.store
                .data_mut()
                .frames
                .check_rewind_done()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Runs slices until the program ends.
    pub fn run_to_end(&mut self) -> Exit {
        loop {
            match self.run_slice() {
                Slice::Exited(exit) => return exit,
                Slice::Yielded => {}
                Slice::Unwound => {
                    return Exit::Trap("vessel unwound with nobody to capture it".into())
                }
            }
        }
    }

    /// Whether the vessel can be captured (it was instrumented).
    pub fn migratable(&self) -> bool {
        self.controls.is_some()
    }

    /// Asks the vessel to unwind at its next migration point. Call between
    /// slices. Returns false when it cannot be asked now (not migratable, or
    /// still rewinding: ask again after the next slice).
    pub fn request_unwind(&mut self) -> bool {
        if self.controls.is_none() || self.state() != wasm_rewriter::abi::STATE_RUNNING {
            return false;
        }
        self.set_state(wasm_rewriter::abi::STATE_UNWIND_REQUESTED);
        true
    }

    /// With a countdown module: unwind at the `n`-th migration point from
    /// now (loop headers and recursive-function entries count).
    pub fn unwind_after_points(&mut self, n: u32) -> bool {
        let Some(c) = self.controls.as_ref().and_then(|c| c.countdown) else {
            return false;
        };
        c.set(&mut self.store, Val::I32(n as i32)).is_ok()
    }

    /// Takes the state of a vessel that has just unwound. The vessel is
    /// spent afterwards; resume the capture in a new one.
    pub fn capture(&mut self, points_passed: u64) -> Result<Capture, DockError> {
        let mut capture = self.capture_state(points_passed)?;
        capture.memory = self.memory().to_vec();
        Ok(capture)
    }

    /// [`capture`](Self::capture) without the memory (`memory` is left
    /// empty): the memory stays in the spent vessel, readable through
    /// [`memory`](Self::memory) for as long as it is kept. A migration's
    /// final round compares it there with what was last sent, rather than
    /// copying the whole memory while the vessel is paused.
    pub fn capture_state(&mut self, points_passed: u64) -> Result<Capture, DockError> {
        let Phase::Unwound(entry) = self.phase else {
            return Err(DockError::Capture("the vessel has not unwound".into()));
        };
        let Some(controls) = &self.controls else {
            return Err(DockError::Capture("the vessel is not migratable".into()));
        };
        let frames = self
            .store
            .data_mut()
            .frames
            .take_unwound()
            .map_err(|e| DockError::Capture(e.to_string()))?;
        if frames.is_empty() {
            return Err(DockError::Capture(
                "the vessel unwound without saving a frame".into(),
            ));
        }
        let globals = controls
            .globals
            .iter()
            .map(|g| val_to_value(&g.get(&self.store)))
            .collect();
        let data_dropped = controls
            .data_dropped
            .and_then(|g| g.get(&self.store).i64())
            .unwrap_or(0) as u64;
        let wasi = self
            .store
            .data_mut()
            .wasi
            .capture_state()
            .map_err(|e| DockError::Capture(e.to_string()))?;
        self.phase = Phase::Ended;
        Ok(Capture {
            memory: Vec::new(),
            globals,
            data_dropped,
            entry,
            frames,
            wasi,
            points_passed,
        })
    }

    /// Re-creates a vessel from a capture: checks every frame against the
    /// module's frame layouts before anything runs, then restores memory and
    /// globals; the first slice rewinds the stack.
    pub fn resume(
        engine: &Engine,
        vm: &VesselModule,
        capture: &Capture,
        wasi: WasiCtx,
        config: &DockConfig,
    ) -> Result<Self, DockError> {
        let instrumented = vm
            .instrumented
            .as_ref()
            .ok_or_else(|| DockError::Resume("the module was not instrumented".into()))?;
        validate_frames(&capture.frames, &instrumented.report, config)?;
        if capture.memory.len() as u64 > config.max_memory_bytes as u64 {
            return Err(DockError::Resume(format!(
                "memory of {} bytes is over this dock's limit of {} bytes",
                capture.memory.len(),
                config.max_memory_bytes
            )));
        }
        let mut v = Self::instantiate(engine, vm, wasi, config)?;
        if v.has_memory() {
            v.memory_sized(capture.memory.len() as u64)?
                .copy_from_slice(&capture.memory);
        } else if !capture.memory.is_empty() {
            return Err(DockError::Resume(
                "memory captured, but the module has none".into(),
            ));
        }
        v.restore(capture, config)
    }

    /// A vessel instantiated ahead of a resume whose state is not known
    /// yet: a migration's destination fills its memory
    /// ([`memory_sized`](Self::memory_sized)) from the pre-copy rounds'
    /// chunks while the vessel still runs at the source, so that the pause
    /// writes only what changed since, into pages already in place. It
    /// runs nothing until [`resume_blank`](Self::resume_blank).
    pub fn blank(
        engine: &Engine,
        vm: &VesselModule,
        config: &DockConfig,
    ) -> Result<Self, DockError> {
        if vm.instrumented.is_none() {
            return Err(DockError::Resume("the module was not instrumented".into()));
        }
        let wasi = WasiCtx::new(WasiOptions {
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            stdio: Stdio {
                stdin: InputSource::Empty,
                stdout: OutputSink::Buffer(Default::default()),
                stderr: OutputSink::Buffer(Default::default()),
            },
        })
        .map_err(|e| DockError::Instantiate(e.to_string()))?;
        let mut v = Self::instantiate(engine, vm, wasi, config)?;
        v.phase = Phase::Blank;
        Ok(v)
    }

    /// Finishes the resume of a [`blank`](Self::blank) vessel whose memory
    /// already holds the captured memory (`capture.memory` is ignored; the
    /// memory must be `memory_bytes` long, the size the snapshot names):
    /// the same checks and restores as [`resume`](Self::resume), without
    /// instantiating or copying the memory.
    pub fn resume_blank(
        mut self,
        vm: &VesselModule,
        capture: &Capture,
        memory_bytes: u64,
        wasi: WasiCtx,
        config: &DockConfig,
    ) -> Result<Self, DockError> {
        if self.phase != Phase::Blank || self.slices != 0 {
            return Err(DockError::Resume(
                "the vessel is not a blank instance".into(),
            ));
        }
        let instrumented = vm
            .instrumented
            .as_ref()
            .ok_or_else(|| DockError::Resume("the module was not instrumented".into()))?;
        if self.module != Some(instrumented.hash) {
            return Err(DockError::Resume(
                "the blank instance runs another module".into(),
            ));
        }
        validate_frames(&capture.frames, &instrumented.report, config)?;
        if self.memory().len() as u64 != memory_bytes {
            return Err(DockError::Resume(format!(
                "the prepared memory holds {} bytes, the snapshot {memory_bytes}",
                self.memory().len()
            )));
        }
        self.replace_wasi(wasi);
        self.restore(capture, config)
    }

    fn has_memory(&self) -> bool {
        self.instance
            .get_memory(&self.store, wasm_rewriter::abi::MEMORY_EXPORT)
            .is_some()
    }

    /// The memory, grown first to `bytes` (a whole number of pages, no
    /// less than it holds, within the dock's limit), for writing.
    pub fn memory_sized(&mut self, bytes: u64) -> Result<&mut [u8], DockError> {
        let m = self
            .instance
            .get_memory(&self.store, wasm_rewriter::abi::MEMORY_EXPORT)
            .ok_or_else(|| DockError::Resume("the module has no memory".into()))?;
        let have = m.data(&self.store).len() as u64;
        if !bytes.is_multiple_of(65536) || bytes < have {
            return Err(DockError::Resume(format!(
                "memory of {bytes} bytes cannot restore a module whose memory holds {have} bytes"
            )));
        }
        if bytes > have {
            m.grow(&mut self.store, (bytes - have) / 65536)
                .map_err(|e| {
                    DockError::Resume(format!("cannot grow memory to {bytes} bytes: {e}"))
                })?;
        }
        Ok(m.data_mut(&mut self.store))
    }

    /// The part of a resume after the memory: globals, dropped data
    /// segments, the frames to rewind.
    fn restore(mut self, capture: &Capture, config: &DockConfig) -> Result<Self, DockError> {
        let v = &mut self;
        let controls = v
            .controls
            .as_ref()
            .expect("an instrumented module has controls");
        if capture.globals.len() != controls.globals.len() {
            return Err(DockError::Resume(format!(
                "{} globals captured, the module has {}",
                capture.globals.len(),
                controls.globals.len()
            )));
        }
        // Globals: set every mutable one, with its type checked.
        for (i, (g, value)) in controls.globals.iter().zip(&capture.globals).enumerate() {
            let ty = g.ty(&v.store);
            if ty.mutability() == wasmi::Mutability::Const {
                continue;
            }
            let val = value_to_val(value, ty.content()).ok_or_else(|| {
                DockError::Resume(format!(
                    "global {i}: captured {value:?} does not fit {:?}",
                    ty.content()
                ))
            })?;
            g.set(&mut v.store, val)
                .map_err(|e| DockError::Resume(format!("global {i}: {e}")))?;
        }
        if let Some(g) = controls.data_dropped {
            g.set(&mut v.store, Val::I64(capture.data_dropped as i64))
                .map_err(|e| DockError::Resume(format!("data-dropped global: {e}")))?;
        }
        if let Some(redrop) = controls.redrop {
            let fuel_on = config.fuel_slice.is_some();
            if fuel_on {
                let _ = v.store.set_fuel(u64::MAX / 2);
            }
            redrop
                .call(&mut v.store, &[], &mut [])
                .map_err(|e| DockError::Resume(format!("re-dropping data segments: {e}")))?;
        }
        v.store
            .data_mut()
            .frames
            .begin_rewind(capture.frames.clone());
        v.set_state(wasm_rewriter::abi::STATE_REWINDING);
        v.phase = Phase::Call(capture.entry);
        Ok(self)
    }

    pub fn wasi(&self) -> &WasiCtx {
        &self.store.data().wasi
    }

    /// The vessel's linear memory as it is between two slices (empty when it
    /// has none): what a pre-copy round reads while the vessel keeps running.
    pub fn memory(&self) -> &[u8] {
        match self
            .instance
            .get_memory(&self.store, wasm_rewriter::abi::MEMORY_EXPORT)
        {
            Some(m) => m.data(&self.store),
            None => &[],
        }
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

/// Checks captured frames against the instrumented module's layouts: the
/// function is instrumented, the point exists, and every value has the type
/// the function saves there.
pub fn validate_frames(
    frames: &[Frame],
    report: &wasm_rewriter::Report,
    config: &DockConfig,
) -> Result<(), DockError> {
    use wasm_rewriter::FrameValType as T;
    if frames.is_empty() {
        return Err(DockError::Resume("no frames".into()));
    }
    if frames.len() > config.max_call_depth {
        return Err(DockError::Resume(format!(
            "{} frames, over the call-depth limit of {}",
            frames.len(),
            config.max_call_depth
        )));
    }
    for (i, f) in frames.iter().enumerate() {
        let layout = report
            .frames
            .binary_search_by_key(&f.func, |l| l.func_index)
            .map(|at| &report.frames[at])
            .map_err(|_| {
                DockError::Resume(format!(
                    "frame {i}: function {} is not instrumented",
                    f.func
                ))
            })?;
        if f.point >= layout.points {
            return Err(DockError::Resume(format!(
                "frame {i}: function {} has {} migration points, not point {}",
                f.func, layout.points, f.point
            )));
        }
        if f.locals.len() != layout.locals.len() {
            return Err(DockError::Resume(format!(
                "frame {i}: function {} saves {} values, the frame has {}",
                f.func,
                layout.locals.len(),
                f.locals.len()
            )));
        }
        for (j, (v, t)) in f.locals.iter().zip(&layout.locals).enumerate() {
            let ok = matches!(
                (v, t),
                (Value::I32(_), T::I32)
                    | (Value::I64(_), T::I64)
                    | (Value::F32(_), T::F32)
                    | (Value::F64(_), T::F64)
            );
            if !ok {
                return Err(DockError::Resume(format!(
                    "frame {i}: function {} value {j} is {v:?}, the function saves a {t} there",
                    f.func
                )));
            }
        }
    }
    Ok(())
}

fn val_to_value(v: &Val) -> Value {
    match v {
        Val::I32(x) => Value::I32(*x),
        Val::I64(x) => Value::I64(*x),
        Val::F32(x) => Value::F32(x.to_bits()),
        Val::F64(x) => Value::F64(x.to_bits()),
        // The rewriter refuses mutable reference-typed globals, so these are
        // constants that instantiation re-creates; their value is not needed.
        Val::FuncRef(_) => Value::FuncRef(None),
        _ => Value::ExternRefNull,
    }
}

fn value_to_val(v: &Value, ty: wasmi::ValType) -> Option<Val> {
    use wasmi::ValType as T;
    match (v, ty) {
        (Value::I32(x), T::I32) => Some(Val::I32(*x)),
        (Value::I64(x), T::I64) => Some(Val::I64(*x)),
        (Value::F32(x), T::F32) => Some(Val::F32(wasmi::F32::from_bits(*x))),
        (Value::F64(x), T::F64) => Some(Val::F64(wasmi::F64::from_bits(*x))),
        _ => None,
    }
}

/// Turns a wasmi error into how the vessel ended. A trap names the function
/// it happened in when wasmi can tell: `unreachable in function `f`
/// (func[3]) (while running _start)`.
fn classify_error(e: wasmi::Error, during: &str, site: &TrapSite) -> Exit {
    if let Some(code) = e.i32_exit_status() {
        return Exit::Code(code as u32);
    }
    let func = site.describe(&e);
    match e.as_trap_code() {
        Some(code) => Exit::Trap(format!("{code}{func} (while running {during})")),
        None => Exit::Trap(format!("{e}{func} (while running {during})")),
    }
}

/// Runs a vessel to completion on a worker thread of its own.
pub fn spawn(mut vessel: Vessel, name: String) -> std::io::Result<JoinHandle<(Exit, Vessel)>> {
    std::thread::Builder::new()
        .name(format!("vessel-{name}"))
        .spawn(move || {
            let exit = vessel.run_to_end();
            (exit, vessel)
        })
}

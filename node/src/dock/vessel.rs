//! Running: instantiating a [`Vessel`] in its own wasmi store, running it
//! one fuel slice at a time, asking it to unwind at a migration point, and
//! [`spawn`] to run one to its end on a worker thread of its own.

use std::sync::Arc;
use std::thread::JoinHandle;

use protocol::snapshot::{Entry, Hash};
use wasmi::{
    Engine, Extern, Func, Global, Instance, Linker, Memory, ResumableCall, ResumableCallOutOfFuel,
    Store, Val,
};

use super::dirty::WriteTracker;
use super::frames::{self, FrameIo, FrameView};
use super::limits::VesselLimiter;
use super::load::VesselModule;
use super::trap::TrapSite;
use super::wasi::{self, WasiCtx, WasiView};
use super::{DockConfig, DockError};

/// The store data of one vessel.
pub struct VesselCtx {
    pub wasi: WasiCtx,
    memory: Option<Memory>,
    limits: VesselLimiter,
    pub(super) frames: FrameIo,
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
pub(super) enum Phase {
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
pub(super) struct Controls {
    pub(super) state: Global,
    pub(super) countdown: Option<Global>,
    pub(super) globals: Vec<Global>,
    pub(super) data_dropped: Option<Global>,
    pub(super) redrop: Option<Func>,
}

/// One instantiated program.
pub struct Vessel {
    pub(super) store: Store<VesselCtx>,
    pub(super) instance: Instance,
    start: Option<Func>,
    main: Func,
    pub(super) controls: Option<Controls>,
    fuel_slice: Option<u64>,
    pending: Option<ResumableCallOutOfFuel>,
    pub(super) phase: Phase,
    pub(super) slices: u64,
    /// Fuel the slices used, since this vessel was made (`/metrics`).
    pub(super) fuel_used: u64,
    /// Names the function a trap happens in.
    trap_site: TrapSite,
    /// The instrumented module it was instantiated from (None: plain).
    pub(super) module: Option<Hash>,
    /// Which pages of its memory were written between two checkpoints.
    writes: Arc<WriteTracker>,
}

impl Vessel {
    /// Holds the vessel to `max_memory_bytes` (`deploy --max-memory`; the
    /// dock's limit still holds if lower): a growth past it traps it,
    /// saying so.
    pub fn limit_memory(&mut self, max_memory_bytes: u64) {
        let max = usize::try_from(max_memory_bytes).unwrap_or(usize::MAX);
        self.store.data_mut().limits.trap_over_memory(max);
    }
}

impl Drop for Vessel {
    /// Unprotects the memory before the store frees it.
    fn drop(&mut self) {
        self.writes.disarm();
    }
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

    pub(super) fn instantiate(
        engine: &Engine,
        vm: &VesselModule,
        wasi: WasiCtx,
        config: &DockConfig,
    ) -> Result<Self, DockError> {
        let writes = Arc::new(WriteTracker::default());
        let mut store = new_store(engine, wasi, config, writes.clone())?;
        let mut linker = Linker::new(engine);
        wasi::add_to_linker(&mut linker).map_err(|e| DockError::Instantiate(e.to_string()))?;
        frames::add_to_linker(&mut linker).map_err(|e| DockError::Instantiate(e.to_string()))?;
        let trap_site = TrapSite::new(&vm.module, &vm.original, vm.instrumented.is_some());
        // A plain module's start section runs here, as wasmi always runs it;
        // the rewriter has moved an instrumented module's into an export.
        let instance = linker
            .instantiate_and_start(&mut store, &vm.module)
            .map_err(|e| {
                if let Some(over) = store.data().limits.refused_by(&e) {
                    return DockError::InstantiateOverLimit(over);
                }
                match classify_error(e, "the start function", &trap_site) {
                    Exit::Trap(t) => DockError::Trap(t),
                    Exit::Code(c) => {
                        DockError::Instantiate(format!("the start function exited with {c}"))
                    }
                }
            })?;
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
            Some(_) => Some(find_controls(&instance, &store)?),
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
            fuel_used: 0,
            trap_site,
            module: vm.instrumented.as_ref().map(|i| i.hash),
            writes,
        })
    }

    fn entry_func(&self, entry: Entry) -> Func {
        match entry {
            Entry::Start => self.start.unwrap_or(self.main),
            Entry::Main => self.main,
        }
    }

    pub(super) fn state(&self) -> i32 {
        self.controls
            .as_ref()
            .map_or(0, |c| c.state.get(&self.store).i32().unwrap_or(0))
    }

    pub(super) fn set_state(&mut self, v: i32) {
        if let Some(c) = &self.controls {
            // The global is the rewriter's mutable i32; a type error here
            // would be a rewriter bug, caught by the pair assertions.
            let _ = c.state.set(&mut self.store, Val::I32(v));
        }
    }

    /// Runs until the fuel slice is used up, the program ends, or it unwinds.
    pub fn run_slice(&mut self) -> Slice {
        let mut given = None;
        if let Some(fuel) = self.fuel_slice {
            // One operation (a large memory.fill, say) may cost more than a
            // whole slice; give it what it needs, or it could never finish.
            let required = self.pending.as_ref().map_or(0, |call| call.required_fuel());
            if let Err(e) = self.store.set_fuel(fuel.max(required)) {
                return Slice::Exited(Exit::Trap(e.to_string()));
            }
            given = Some(fuel.max(required));
        }
        let slice = self.run_slice_fueled();
        if let (Some(given), Ok(left)) = (given, self.store.get_fuel()) {
            self.fuel_used += given.saturating_sub(left);
        }
        slice
    }

    /// Fuel used by this vessel's slices so far (0 without fuel metering).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    fn run_slice_fueled(&mut self) -> Slice {
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
            Ok(ResumableCall::Finished) => self.finished(entry),
            Ok(ResumableCall::HostTrap(t)) => {
                self.phase = Phase::Ended;
                Slice::Exited(classify_error(t.into_host_error(), during, &self.trap_site))
            }
            Err(e) => {
                self.phase = Phase::Ended;
                if let Some(over) = self.store.data().limits.trapped_over() {
                    return Slice::Exited(Exit::Trap(format!(
                        "out of memory: it asked for {} bytes, over its --max-memory of {} bytes",
                        over.requested, over.allowed
                    )));
                }
                Slice::Exited(classify_error(e, during, &self.trap_site))
            }
        }
    }

    /// The call of `entry` returned: the vessel unwound, or the entry is
    /// done (the start function hands over to `_start`, which ends it).
    fn finished(&mut self, entry: Entry) -> Slice {
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

    /// The memory and the WASI context at once (a checkpoint in the pause
    /// reads the one and asks the other which files changed).
    pub fn memory_and_wasi(&mut self) -> (&[u8], &mut WasiCtx) {
        match self
            .instance
            .get_memory(&self.store, wasm_rewriter::abi::MEMORY_EXPORT)
        {
            Some(m) => {
                let (memory, ctx) = m.data_and_store_mut(&mut self.store);
                (memory, &mut ctx.wasi)
            }
            None => (&[], &mut self.store.data_mut().wasi),
        }
    }

    /// Its write tracking: a checkpoint's pause asks it which chunks of
    /// the memory were written since the last.
    pub fn write_tracker(&self) -> &Arc<WriteTracker> {
        &self.writes
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

/// A store for one vessel, with its memory limit and its first slice's
/// fuel.
fn new_store(
    engine: &Engine,
    wasi: WasiCtx,
    config: &DockConfig,
    writes: Arc<WriteTracker>,
) -> Result<Store<VesselCtx>, DockError> {
    let limits = VesselLimiter::new(config.memory_limit()).with_write_tracker(writes);
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
    Ok(store)
}

/// The rewriter's exports in an instrumented instance.
fn find_controls(instance: &Instance, store: &Store<VesselCtx>) -> Result<Controls, DockError> {
    use wasm_rewriter::abi;
    let global = |name: &str| instance.get_global(store, name);
    let state = global(abi::STATE_EXPORT)
        .ok_or_else(|| DockError::Instantiate(format!("no {} export", abi::STATE_EXPORT)))?;
    let mut globals = Vec::new();
    while let Some(g) = global(&format!("{}{}", abi::GLOBAL_EXPORT_PREFIX, globals.len())) {
        globals.push(g);
    }
    Ok(Controls {
        state,
        countdown: global(abi::COUNTDOWN_EXPORT),
        globals,
        data_dropped: global(abi::DATA_DROPPED_EXPORT),
        redrop: instance.get_func(store, abi::REDROP_EXPORT),
    })
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

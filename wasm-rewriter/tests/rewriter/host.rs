//! A wasmi test host implementing the ABI of docs/rewriter.md, and a plain
//! runner for original modules.
//!
//! The migrating runner really drops everything between migrations: each
//! capture is serialized to bytes, the Store and instance are dropped, and the
//! next segment starts from a fresh Store built from those bytes alone.

use std::collections::VecDeque;

use wasm_rewriter::abi;
use wasm_rewriter::{FrameValType, Rewritten};
use wasmi::{Caller, Config, Engine, Extern, Linker, Module, Store, Val, F32, F64};

/// A value with its exact bits, so that NaN payloads compare too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    /// A reference; only nullness is comparable across instances.
    Ref {
        is_null: bool,
    },
}

impl Bits {
    pub fn of(v: &Val) -> Bits {
        match v {
            Val::I32(x) => Bits::I32(*x),
            Val::I64(x) => Bits::I64(*x),
            Val::F32(x) => Bits::F32(x.to_bits()),
            Val::F64(x) => Bits::F64(x.to_bits()),
            Val::FuncRef(r) => Bits::Ref {
                is_null: r.is_null(),
            },
            Val::ExternRef(r) => Bits::Ref {
                is_null: r.is_null(),
            },
            other => panic!("unexpected value {other:?}"),
        }
    }

    pub fn to_val(self) -> Val {
        match self {
            Bits::I32(x) => Val::I32(x),
            Bits::I64(x) => Val::I64(x),
            Bits::F32(x) => Val::F32(F32::from_bits(x)),
            Bits::F64(x) => Val::F64(F64::from_bits(x)),
            Bits::Ref { .. } => panic!("references are never restored"),
        }
    }

    fn frame_type(self) -> Option<FrameValType> {
        match self {
            Bits::I32(_) => Some(FrameValType::I32),
            Bits::I64(_) => Some(FrameValType::I64),
            Bits::F32(_) => Some(FrameValType::F32),
            Bits::F64(_) => Some(FrameValType::F64),
            Bits::Ref { .. } => None,
        }
    }
}

/// What a run produced. Two runs of equivalent modules must be equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Results, or `Err` if the call trapped (the trap code compared).
    pub outcome: Result<Vec<Bits>, Trapped>,
    pub memory: Vec<u8>,
    /// Every global of the input module, in index order.
    pub globals: Vec<Bits>,
    /// What the program sent to `env.log` and which blocking calls really ran.
    pub log: Vec<i64>,
}

/// A trap, or another error that ended a run (a host error, a failed
/// instantiation). Two traps are equal when their trap codes are: a
/// division by zero is not an out-of-bounds access. Errors that are not
/// traps carry no code and are equal when their messages are, so that a
/// host error in the instrumented run (a broken unwind or rewind) never
/// passes for the original's trap. The message is shown in assertion
/// failures (through `Debug`).
#[derive(Debug, Clone)]
pub struct Trapped {
    pub code: Option<wasmi::TrapCode>,
    pub message: String,
}

impl Trapped {
    fn of(e: &wasmi::Error) -> Trapped {
        Trapped {
            code: e.as_trap_code(),
            message: e.to_string(),
        }
    }
}

impl PartialEq for Trapped {
    fn eq(&self, other: &Self) -> bool {
        match (self.code, other.code) {
            (Some(a), Some(b)) => a == b,
            (None, None) => without_store_ids(&self.message) == without_store_ids(&other.message),
            _ => false,
        }
    }
}
impl Eq for Trapped {}

/// `message` with every `StoreId(N)` written `StoreId(_)`: wasmi names the
/// store an entity lives in (an instantiation's out-of-bounds table
/// access, say), and the original and the instrumented module each run in
/// a store of their own, so the same error differs there and nowhere else.
pub fn without_store_ids(message: &str) -> String {
    const TAG: &str = "StoreId(";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(TAG) {
        let after = &rest[at + TAG.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..at + TAG.len()]);
        if digits > 0 && after[digits..].starts_with(')') {
            out.push('_');
            rest = &after[digits..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, Copy)]
pub struct StackLimits {
    pub max_recursion_depth: usize,
    pub max_stack_height: usize,
}

pub const FUEL: u64 = 2_000_000_000;

fn engine(limits: Option<StackLimits>) -> Engine {
    let mut config = Config::default();
    config.consume_fuel(true);
    if let Some(l) = limits {
        config.set_max_recursion_depth(l.max_recursion_depth);
        config.set_max_stack_height(l.max_stack_height);
    }
    Engine::new(&config)
}

/// A typed frame as the host keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub func: u32,
    pub point: u32,
    pub values: Vec<Bits>,
}

/// Host state that travels with a capture (the test's stand-in for the WASI
/// state of a real dock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    pub log: Vec<i64>,
    /// Blocking calls seen so far (the fake unwinds on every `block_every`-th).
    pub blocking_seen: u64,
    /// Arguments of the blocking call the vessel unwound from, checked when it
    /// is re-issued after the rewind.
    pub pending_blocking: Option<[i32; 4]>,
}

pub struct HostState {
    /// Caps memory growth (generated modules may grow towards 4 GiB); a
    /// refused `memory.grow` returns -1 in both runs alike.
    limits: wasmi::StoreLimits,
    carried: Carried,
    block_every: u64,
    /// Values of the frame being saved.
    pending: Vec<Bits>,
    /// Frames saved during the current unwind, innermost first.
    saved: Vec<Frame>,
    /// Frames still to hand out during a rewind, outermost first.
    to_load: VecDeque<Frame>,
    /// The frame being loaded and how many of its values were handed out.
    loading: Option<(Frame, usize)>,
    frames_handed_out: usize,
    frames_to_hand_out: usize,
}

/// Memory a test vessel may grow to.
pub const MEMORY_LIMIT_BYTES: usize = 8 << 20;

impl Default for HostState {
    fn default() -> Self {
        Self {
            limits: wasmi::StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT_BYTES)
                .build(),
            carried: Carried::default(),
            block_every: 0,
            pending: Vec::new(),
            saved: Vec::new(),
            to_load: VecDeque::new(),
            loading: None,
            frames_handed_out: 0,
            frames_to_hand_out: 0,
        }
    }
}

fn new_store(engine: &Engine) -> Store<HostState> {
    let mut store = Store::new(engine, HostState::default());
    store.limiter(|h| &mut h.limits);
    store.set_fuel(FUEL).unwrap();
    store
}

impl HostState {
    fn check_rewind_done(&self) -> Result<(), wasmi::Error> {
        if let Some((f, used)) = &self.loading {
            if *used != f.values.len() {
                return Err(wasmi::Error::new(format!(
                    "frame of function {} had {} values, {used} were loaded",
                    f.func,
                    f.values.len()
                )));
            }
        }
        if !self.to_load.is_empty() || self.frames_handed_out != self.frames_to_hand_out {
            return Err(wasmi::Error::new(format!(
                "rewind ended with {} of {} frames handed out",
                self.frames_handed_out, self.frames_to_hand_out
            )));
        }
        Ok(())
    }

    fn load(&mut self, ty: FrameValType) -> Result<Bits, wasmi::Error> {
        let Some((frame, used)) = &mut self.loading else {
            return Err(wasmi::Error::new("load without load_point"));
        };
        let v = *frame
            .values
            .get(*used)
            .ok_or_else(|| wasmi::Error::new("frame has fewer values than loaded"))?;
        if v.frame_type() != Some(ty) {
            return Err(wasmi::Error::new(format!("loaded {ty} but saved {v:?}")));
        }
        *used += 1;
        Ok(v)
    }
}

fn state_global(caller: &Caller<'_, HostState>) -> wasmi::Global {
    match caller.get_export(abi::STATE_EXPORT) {
        Some(Extern::Global(g)) => g,
        _ => panic!("instrumented module exports its state"),
    }
}

fn get_state(caller: &Caller<'_, HostState>) -> i32 {
    match state_global(caller).get(caller) {
        Val::I32(s) => s,
        other => panic!("state is {other:?}"),
    }
}

fn set_state(caller: &mut Caller<'_, HostState>, s: i32) {
    state_global(caller).set(caller, Val::I32(s)).unwrap();
}

fn fake_poll(a: i32, b: i32, c: i32, d: i32) -> i32 {
    a.wrapping_mul(7)
        .wrapping_add(b.wrapping_mul(5))
        .wrapping_add(c.wrapping_mul(3))
        .wrapping_add(d)
}

/// Imports every test module may use: `env.log(i64)` and a fake blocking
/// `wasi_snapshot_preview1.poll_oneoff`. With `instrumented`, the ABI
/// imports too, and the fake unwinds on every `block_every`-th call.
fn linker(engine: &Engine, instrumented: bool) -> Linker<HostState> {
    let mut l = Linker::new(engine);
    l.func_wrap("env", "log", |mut c: Caller<'_, HostState>, v: i64| {
        c.data_mut().carried.log.push(v)
    })
    .unwrap();
    if !instrumented {
        l.func_wrap(
            "wasi_snapshot_preview1",
            "poll_oneoff",
            |mut c: Caller<'_, HostState>, a: i32, b: i32, cc: i32, d: i32| {
                c.data_mut()
                    .carried
                    .log
                    .push(i64::from(fake_poll(a, b, cc, d)));
                fake_poll(a, b, cc, d)
            },
        )
        .unwrap();
        return l;
    }
    l.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut c: Caller<'_, HostState>,
         a: i32,
         b: i32,
         cc: i32,
         d: i32|
         -> Result<i32, wasmi::Error> {
            let args = [a, b, cc, d];
            match get_state(&c) {
                abi::STATE_REWINDING => {
                    // The innermost frame re-issues the call: the rewind is
                    // complete, and the arguments must be the original ones.
                    c.data().check_rewind_done()?;
                    let pending = c.data_mut().carried.pending_blocking.take();
                    if pending != Some(args) {
                        return Err(wasmi::Error::new(format!(
                            "blocking call re-issued with {args:?}, unwound with {pending:?}"
                        )));
                    }
                    set_state(&mut c, abi::STATE_RUNNING);
                }
                state @ (abi::STATE_RUNNING | abi::STATE_UNWIND_REQUESTED) => {
                    let h = c.data_mut();
                    h.carried.blocking_seen += 1;
                    let due =
                        h.block_every > 0 && h.carried.blocking_seen.is_multiple_of(h.block_every);
                    if due || state == abi::STATE_UNWIND_REQUESTED {
                        h.carried.pending_blocking = Some(args);
                        set_state(&mut c, abi::STATE_UNWINDING);
                        return Ok(0);
                    }
                }
                s => return Err(wasmi::Error::new(format!("blocking call in state {s}"))),
            }
            c.data_mut()
                .carried
                .log
                .push(i64::from(fake_poll(a, b, cc, d)));
            Ok(fake_poll(a, b, cc, d))
        },
    )
    .unwrap();
    macro_rules! save {
        ($name:literal, $ty:ty, $conv:expr) => {
            l.func_wrap(
                abi::IMPORT_MODULE,
                $name,
                |mut c: Caller<'_, HostState>, v: $ty| c.data_mut().pending.push($conv(v)),
            )
            .unwrap();
        };
    }
    save!("save_i32", i32, Bits::I32);
    save!("save_i64", i64, Bits::I64);
    save!("save_f32", F32, |v: F32| Bits::F32(v.to_bits()));
    save!("save_f64", F64, |v: F64| Bits::F64(v.to_bits()));
    l.func_wrap(
        abi::IMPORT_MODULE,
        "save_point",
        |mut c: Caller<'_, HostState>, func: i32, point: i32| -> Result<(), wasmi::Error> {
            if get_state(&c) != abi::STATE_UNWINDING {
                return Err(wasmi::Error::new("save_point while not unwinding"));
            }
            let h = c.data_mut();
            let values = std::mem::take(&mut h.pending);
            h.saved.push(Frame {
                func: func as u32,
                point: point as u32,
                values,
            });
            Ok(())
        },
    )
    .unwrap();
    macro_rules! load {
        ($name:literal, $ty:ty, $ft:expr, $pat:pat => $out:expr) => {
            l.func_wrap(
                abi::IMPORT_MODULE,
                $name,
                |mut c: Caller<'_, HostState>| -> Result<$ty, wasmi::Error> {
                    match c.data_mut().load($ft)? {
                        $pat => Ok($out),
                        _ => unreachable!("load checked the type"),
                    }
                },
            )
            .unwrap();
        };
    }
    load!("load_i32", i32, FrameValType::I32, Bits::I32(v) => v);
    load!("load_i64", i64, FrameValType::I64, Bits::I64(v) => v);
    load!("load_f32", F32, FrameValType::F32, Bits::F32(v) => F32::from_bits(v));
    load!("load_f64", F64, FrameValType::F64, Bits::F64(v) => F64::from_bits(v));
    l.func_wrap(
        abi::IMPORT_MODULE,
        "load_point",
        |mut c: Caller<'_, HostState>, func: i32| -> Result<i32, wasmi::Error> {
            if get_state(&c) != abi::STATE_REWINDING {
                return Err(wasmi::Error::new("load_point while not rewinding"));
            }
            let h = c.data_mut();
            if let Some((f, used)) = &h.loading {
                if *used != f.values.len() {
                    return Err(wasmi::Error::new("previous frame not fully loaded"));
                }
            }
            let frame = h
                .to_load
                .pop_front()
                .ok_or_else(|| wasmi::Error::new("load_point: no frame left"))?;
            if frame.func != func as u32 {
                return Err(wasmi::Error::new(format!(
                    "load_point({func}) but the next frame is of function {}",
                    frame.func
                )));
            }
            let point = frame.point as i32;
            h.loading = Some((frame, 0));
            h.frames_handed_out += 1;
            Ok(point)
        },
    )
    .unwrap();
    l
}

fn memory_bytes(store: &Store<HostState>, inst: &wasmi::Instance, name: &str) -> Vec<u8> {
    inst.get_memory(store, name)
        .map(|m| m.data(store).to_vec())
        .unwrap_or_default()
}

fn call(
    store: &mut Store<HostState>,
    inst: &wasmi::Instance,
    entry: &str,
    args: &[Val],
) -> Result<Vec<Bits>, Trapped> {
    let func = inst.get_func(&*store, entry).expect("entry export");
    let ty = func.ty(&*store);
    let mut results: Vec<Val> = ty
        .results()
        .iter()
        .map(|t| Val::default_for_ty(*t))
        .collect();
    func.call(&mut *store, args, &mut results)
        .map_err(|e| Trapped::of(&e))?;
    Ok(results.iter().map(Bits::of).collect())
}

/// Runs an original module: instantiate (its start function runs), call
/// `entry`. `exported` is the module passed through [`export_all`], so that
/// memory and globals are visible.
pub fn run_original(
    exported: &[u8],
    num_globals: u32,
    entry: &str,
    args: &[Val],
    limits: Option<StackLimits>,
) -> Observed {
    let engine = engine(limits);
    let module = Module::new(&engine, exported).expect("original compiles");
    let mut store = new_store(&engine);
    let linker = linker(&engine, false);
    let outcome = match linker.instantiate_and_start(&mut store, &module) {
        Ok(inst) => {
            let outcome = call(&mut store, &inst, entry, args);
            let globals = (0..num_globals)
                .map(|g| {
                    let g = inst.get_global(&store, &format!("test_g{g}")).unwrap();
                    Bits::of(&g.get(&store))
                })
                .collect();
            return Observed {
                outcome,
                memory: memory_bytes(&store, &inst, "test_memory"),
                globals,
                log: store.data().carried.log.clone(),
            };
        }
        Err(e) => Err(Trapped::of(&e)),
    };
    Observed {
        outcome,
        memory: Vec::new(),
        globals: Vec::new(),
        log: store.data().carried.log.clone(),
    }
}

/// When the instrumented run should migrate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Set the countdown to this before every segment (0: never).
    pub countdown: u32,
    /// The fake blocking import unwinds on every this-th call (0: never).
    pub block_every: u64,
    /// Stop migrating after this many captures.
    pub max_migrations: u32,
}

/// A capture, serialized: this is all that crosses from one Store to the next.
fn serialize(
    frames: &[Frame],
    memory: &[u8],
    globals: &[(String, Bits)],
    carried: &Carried,
) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, x: u64| out.extend_from_slice(&x.to_le_bytes());
    let put_bits = |out: &mut Vec<u8>, b: &Bits| {
        let (tag, v) = match *b {
            Bits::I32(x) => (0u64, x as u32 as u64),
            Bits::I64(x) => (1, x as u64),
            Bits::F32(x) => (2, u64::from(x)),
            Bits::F64(x) => (3, x),
            Bits::Ref { .. } => panic!("references are not captured"),
        };
        put(out, tag);
        put(out, v);
    };
    put(&mut out, frames.len() as u64);
    for f in frames {
        put(&mut out, u64::from(f.func));
        put(&mut out, u64::from(f.point));
        put(&mut out, f.values.len() as u64);
        for v in &f.values {
            put_bits(&mut out, v);
        }
    }
    put(&mut out, memory.len() as u64);
    out.extend_from_slice(memory);
    put(&mut out, globals.len() as u64);
    for (name, v) in globals {
        put(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_bits(&mut out, v);
    }
    put(&mut out, carried.log.len() as u64);
    for &l in &carried.log {
        put(&mut out, l as u64);
    }
    put(&mut out, carried.blocking_seen);
    match carried.pending_blocking {
        Some(a) => {
            put(&mut out, 1);
            for x in a {
                put(&mut out, x as u32 as u64);
            }
        }
        None => put(&mut out, 0),
    }
    out
}

type Capture = (Vec<Frame>, Vec<u8>, Vec<(String, Bits)>, Carried);

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> u64 {
        let x = u64::from_le_bytes(self.bytes[self.pos..self.pos + 8].try_into().unwrap());
        self.pos += 8;
        x
    }

    fn bytes(&mut self, len: usize) -> &[u8] {
        self.pos += len;
        &self.bytes[self.pos - len..self.pos]
    }

    fn bits(&mut self) -> Bits {
        let tag = self.u64();
        let v = self.u64();
        match tag {
            0 => Bits::I32(v as u32 as i32),
            1 => Bits::I64(v as i64),
            2 => Bits::F32(v as u32),
            3 => Bits::F64(v),
            _ => panic!("bad value tag {tag}"),
        }
    }
}

fn deserialize(bytes: &[u8]) -> Capture {
    let mut r = Reader { bytes, pos: 0 };
    let n = r.u64();
    let mut frames = Vec::new();
    for _ in 0..n {
        let func = r.u64() as u32;
        let point = r.u64() as u32;
        let count = r.u64();
        let values = (0..count).map(|_| r.bits()).collect();
        frames.push(Frame {
            func,
            point,
            values,
        });
    }
    let mem_len = r.u64() as usize;
    let memory = r.bytes(mem_len).to_vec();
    let gn = r.u64();
    let mut globals = Vec::new();
    for _ in 0..gn {
        let len = r.u64() as usize;
        let name = String::from_utf8(r.bytes(len).to_vec()).unwrap();
        globals.push((name, r.bits()));
    }
    let ln = r.u64();
    let log = (0..ln).map(|_| r.u64() as i64).collect();
    let blocking_seen = r.u64();
    let pending_blocking = if r.u64() == 1 {
        Some([
            r.u64() as i32,
            r.u64() as i32,
            r.u64() as i32,
            r.u64() as i32,
        ])
    } else {
        None
    };
    assert_eq!(r.pos, bytes.len(), "capture fully consumed");
    (
        frames,
        memory,
        globals,
        Carried {
            log,
            blocking_seen,
            pending_blocking,
        },
    )
}

/// The result of a migrating run.
#[derive(Debug)]
pub struct MigratingRun {
    pub observed: Observed,
    pub migrations: u32,
    /// The most frames one capture held.
    pub max_frames: usize,
}

fn global_val(
    store: &Store<HostState>,
    inst: &wasmi::Instance,
    name: &str,
) -> Option<wasmi::Global> {
    let _ = store;
    match inst.get_export(store, name) {
        Some(Extern::Global(g)) => Some(g),
        _ => None,
    }
}

fn state_of(store: &Store<HostState>, inst: &wasmi::Instance) -> i32 {
    match global_val(store, inst, abi::STATE_EXPORT)
        .unwrap()
        .get(store)
    {
        Val::I32(s) => s,
        other => panic!("state is {other:?}"),
    }
}

/// Checks every captured frame against the rewriter's report, as a dock must
/// before it resumes anything.
fn validate_frames(rw: &Rewritten, frames: &[Frame]) {
    for f in frames {
        let layout = rw
            .report
            .frames
            .iter()
            .find(|l| l.func_index == f.func)
            .unwrap_or_else(|| panic!("frame of uninstrumented function {}", f.func));
        assert!(
            f.point < layout.points,
            "point {} of {}",
            f.point,
            layout.points
        );
        let types: Vec<_> = f.values.iter().map(|v| v.frame_type().unwrap()).collect();
        assert_eq!(types, layout.locals, "frame types of function {}", f.func);
    }
}

/// Runs an instrumented module, migrating per `plan`: every capture goes
/// through bytes into a fresh Store.
pub fn run_instrumented(
    rw: &Rewritten,
    num_globals: u32,
    entry: &str,
    args: &[Val],
    plan: Plan,
    limits: Option<StackLimits>,
) -> MigratingRun {
    let engine = engine(limits);
    let module = Module::new(&engine, &rw.wasm).expect("instrumented module compiles");
    let linker = linker(&engine, true);
    // (phase, bytes): phase 0 = inside the start function, 1 = inside entry.
    let mut capture: Option<(u8, Vec<u8>)> = None;
    let mut migrations = 0u32;
    let mut max_frames = 0;
    loop {
        let mut store = new_store(&engine);
        let inst = match linker.instantiate_and_start(&mut store, &module) {
            Ok(inst) => inst,
            Err(e) => {
                return MigratingRun {
                    observed: Observed {
                        outcome: Err(Trapped::of(&e)),
                        memory: Vec::new(),
                        globals: Vec::new(),
                        log: Vec::new(),
                    },
                    migrations,
                    max_frames,
                }
            }
        };
        let mut phase = 0u8;
        if let Some((captured_phase, bytes)) = capture.take() {
            phase = captured_phase;
            let (frames, memory, globals, carried) = deserialize(&bytes);
            validate_frames(rw, &frames);
            if let Some(mem) = inst.get_memory(&store, abi::MEMORY_EXPORT) {
                let have = mem.data(&store).len();
                assert_eq!(memory.len() % 65536, 0);
                mem.grow(&mut store, ((memory.len() - have) / 65536) as u64)
                    .expect("memory grows back to its captured size");
                mem.data_mut(&mut store).copy_from_slice(&memory);
            }
            for (name, v) in &globals {
                global_val(&store, &inst, name)
                    .unwrap()
                    .set(&mut store, v.to_val())
                    .unwrap();
            }
            if let Some(redrop) = inst.get_func(&store, abi::REDROP_EXPORT) {
                redrop.call(&mut store, &[], &mut []).unwrap();
            }
            let h = store.data_mut();
            h.carried = carried;
            h.frames_to_hand_out = frames.len();
            h.to_load = frames.into_iter().rev().collect();
            global_val(&store, &inst, abi::STATE_EXPORT)
                .unwrap()
                .set(&mut store, Val::I32(abi::STATE_REWINDING))
                .unwrap();
        } else if inst.get_func(&store, abi::START_EXPORT).is_none() {
            phase = 1;
        }
        let migrate_more = migrations < plan.max_migrations;
        store.data_mut().block_every = if migrate_more { plan.block_every } else { 0 };
        if let Some(cd) = global_val(&store, &inst, abi::COUNTDOWN_EXPORT) {
            let n = if migrate_more { plan.countdown } else { 0 };
            cd.set(&mut store, Val::I32(n as i32)).unwrap();
        }

        let mut outcome;
        loop {
            let name = if phase == 0 { abi::START_EXPORT } else { entry };
            let call_args: &[Val] = if phase == 0 { &[] } else { args };
            outcome = call(&mut store, &inst, name, call_args);
            if outcome.is_err() && phase == 0 {
                // The original traps inside instantiation: no instance, so
                // nothing else is observable.
                return MigratingRun {
                    observed: Observed {
                        outcome,
                        memory: Vec::new(),
                        globals: Vec::new(),
                        log: store.data().carried.log.clone(),
                    },
                    migrations,
                    max_frames,
                };
            }
            if outcome.is_err() {
                break;
            }
            let state = state_of(&store, &inst);
            store
                .data()
                .check_rewind_done()
                .unwrap_or_else(|e| panic!("pair assertion: {e}"));
            match state {
                abi::STATE_UNWINDING => break,
                abi::STATE_RUNNING | abi::STATE_UNWIND_REQUESTED => {
                    global_val(&store, &inst, abi::STATE_EXPORT)
                        .unwrap()
                        .set(&mut store, Val::I32(abi::STATE_RUNNING))
                        .unwrap();
                    if phase == 0 {
                        phase = 1;
                        continue;
                    }
                    break;
                }
                s => panic!("call returned in state {s}"),
            }
        }
        if outcome.is_ok() && state_of(&store, &inst) == abi::STATE_UNWINDING {
            // Capture: frames, memory, every mutable global, host state.
            let h = store.data_mut();
            assert!(h.pending.is_empty(), "values saved without save_point");
            let frames = std::mem::take(&mut h.saved);
            assert!(!frames.is_empty(), "unwound without frames");
            max_frames = max_frames.max(frames.len());
            let carried = h.carried.clone();
            let memory = inst
                .get_memory(&store, abi::MEMORY_EXPORT)
                .map(|m| m.data(&store).to_vec())
                .unwrap_or_default();
            let mut globals = Vec::new();
            for export in inst.exports(&store) {
                let name = export.name().to_string();
                let Some(g) = export.into_global() else {
                    continue;
                };
                let ours =
                    name.starts_with(abi::GLOBAL_EXPORT_PREFIX) || name == abi::DATA_DROPPED_EXPORT;
                if ours && g.ty(&store).mutability().is_mut() {
                    globals.push((name, Bits::of(&g.get(&store))));
                }
            }
            globals.sort_by(|a, b| a.0.cmp(&b.0));
            globals.dedup_by(|a, b| a.0 == b.0);
            capture = Some((phase, serialize(&frames, &memory, &globals, &carried)));
            migrations += 1;
            continue;
        }
        let globals = (0..num_globals)
            .map(|g| {
                let name = format!("{}{g}", abi::GLOBAL_EXPORT_PREFIX);
                Bits::of(&global_val(&store, &inst, &name).unwrap().get(&store))
            })
            .collect();
        return MigratingRun {
            observed: Observed {
                outcome,
                memory: memory_bytes(&store, &inst, abi::MEMORY_EXPORT),
                globals,
                log: store.data().carried.log.clone(),
            },
            migrations,
            max_frames,
        };
    }
}

/// Adds exports `test_g{N}` for every global and `test_memory` for memory 0
/// to an original module, so a run can observe them. Uses the same
/// `Reencode` machinery as the rewriter.
pub fn export_all(wasm: &[u8]) -> (Vec<u8>, u32) {
    use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
    let mut globals = 0u32;
    let mut memories = 0u32;
    for p in wasmparser::Parser::new(0).parse_all(wasm) {
        match p.unwrap() {
            wasmparser::Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    match i.unwrap().ty {
                        wasmparser::TypeRef::Global(_) => globals += 1,
                        wasmparser::TypeRef::Memory(_) => memories += 1,
                        _ => {}
                    }
                }
            }
            wasmparser::Payload::GlobalSection(r) => globals += r.count(),
            wasmparser::Payload::MemorySection(r) => memories += r.count(),
            _ => {}
        }
    }
    struct Exporter {
        globals: u32,
        memory: bool,
        done: bool,
    }
    impl Exporter {
        fn add(&mut self, e: &mut wasm_encoder::ExportSection) {
            for g in 0..self.globals {
                e.export(&format!("test_g{g}"), wasm_encoder::ExportKind::Global, g);
            }
            if self.memory {
                e.export("test_memory", wasm_encoder::ExportKind::Memory, 0);
            }
            self.done = true;
        }
    }
    impl Reencode for Exporter {
        type Error = std::convert::Infallible;
        fn parse_export_section(
            &mut self,
            exports: &mut wasm_encoder::ExportSection,
            section: wasmparser::ExportSectionReader<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
            self.add(exports);
            Ok(())
        }
        fn intersperse_section_hook(
            &mut self,
            module: &mut wasm_encoder::Module,
            _after: Option<wasm_encoder::SectionId>,
            before: Option<wasm_encoder::SectionId>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            use wasm_encoder::SectionId::*;
            let past_exports = matches!(
                before,
                None | Some(Start | Element | DataCount | Code | Data)
            );
            if past_exports && !self.done {
                let mut e = wasm_encoder::ExportSection::new();
                self.add(&mut e);
                module.section(&e);
            }
            Ok(())
        }
    }
    let mut ex = Exporter {
        globals,
        memory: memories > 0,
        done: false,
    };
    let mut module = wasm_encoder::Module::new();
    ex.parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .unwrap();
    let _ = RoundtripReencoder;
    (module.finish(), globals)
}

/// Goal: the comparison tells traps apart. Two runs that trap for different
/// reasons (here `unreachable` and a division by zero, with the same memory
/// and globals) differ; two that trap for the same reason are equal.
#[test]
fn traps_compare_by_trap_code() {
    let run = |body: &str| {
        let wasm = wat::parse_str(format!(
            r#"(module (memory 1) (func (export "run") {body}))"#
        ))
        .unwrap();
        let (exported, globals) = export_all(&wasm);
        run_original(&exported, globals, "run", &[], None)
    };
    let unreachable = run("unreachable");
    let div_by_zero = run("(drop (i32.div_s (i32.const 1) (i32.const 0)))");
    assert!(unreachable.outcome.is_err() && div_by_zero.outcome.is_err());
    assert_ne!(unreachable, div_by_zero);
    assert_eq!(
        div_by_zero,
        run("(drop (i32.div_u (i32.const 7) (i32.const 0)))")
    );
}

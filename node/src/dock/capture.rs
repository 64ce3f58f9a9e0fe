//! Capturing and resuming: taking an unwound vessel's state
//! ([`Vessel::capture`]), and re-creating a vessel from it
//! ([`Vessel::resume`], or [`Vessel::blank`] then
//! [`Vessel::resume_blank`] when a migration fills the memory ahead of
//! time). Every frame is checked against the module's layouts before
//! anything runs.

use protocol::snapshot::{Entry, Frame, Value};
use wasmi::{Engine, Val};

use super::load::VesselModule;
use super::vessel::{Phase, Vessel};
use super::wasi::{InputSource, OutputSink, Stdio, WasiCtx, WasiOptions};
use super::{DockConfig, DockError};

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

impl Vessel {
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
        let (entry, frames) = self.take_frames()?;
        self.phase = Phase::Ended;
        self.state_with(entry, frames, points_passed)
    }

    /// [`capture_state`](Self::capture_state) of a vessel that then runs
    /// on in place (a periodic checkpoint): its frames are rewound into
    /// this same instance, whose memory and globals the unwind left as they
    /// were, so the next slice continues exactly where it stopped. No new
    /// instance is built and no memory is copied. The vessel runs on even
    /// when the rest of the state cannot be captured (the error says why).
    pub fn capture_state_and_rewind(&mut self, points_passed: u64) -> Result<Capture, DockError> {
        let (entry, frames) = match self.take_frames() {
            Ok(taken) => taken,
            Err(e) => {
                // Without its frames it cannot rewind: it ends here.
                self.phase = Phase::Ended;
                return Err(e);
            }
        };
        let capture = self.state_with(entry, frames.clone(), points_passed);
        self.store.data_mut().frames.begin_rewind(frames);
        self.set_state(wasm_rewriter::abi::STATE_REWINDING);
        self.phase = Phase::Call(entry);
        capture
    }

    /// The frames an unwind saved, and the entry it unwound from.
    fn take_frames(&mut self) -> Result<(Entry, Vec<Frame>), DockError> {
        let Phase::Unwound(entry) = self.phase else {
            return Err(DockError::Capture("the vessel has not unwound".into()));
        };
        if self.controls.is_none() {
            return Err(DockError::Capture("the vessel is not migratable".into()));
        }
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
        Ok((entry, frames))
    }

    /// The state besides the frames and the memory: globals, dropped data
    /// segments, WASI.
    fn state_with(
        &mut self,
        entry: Entry,
        frames: Vec<Frame>,
        points_passed: u64,
    ) -> Result<Capture, DockError> {
        let controls = self
            .controls
            .as_ref()
            .ok_or_else(|| DockError::Capture("the vessel is not migratable".into()))?;
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
        let limit = config.memory_limit();
        if capture.memory.len() as u64 > limit.bytes {
            return Err(DockError::Resume(format!(
                "memory of {} bytes is over this dock's limit of {} {}",
                capture.memory.len(),
                limit.bytes,
                limit.limit
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

//! The host side of the rewriter's frame ABI (`docs/rewriter.md` §3): the
//! ten `meshnode.*` imports through which an instrumented vessel saves its
//! frames while unwinding and loads them back while rewinding.
//!
//! Frames arrive innermost first and are handed back outermost first. Every
//! value is typed; a load of the wrong type, for the wrong function, or past
//! the end of a frame is a trap, so a mismatched snapshot can never make the
//! vessel run on with garbage in its locals.

use std::collections::VecDeque;

use protocol::snapshot::{Frame, Value};
use wasmi::{Caller, Error, Linker};

/// Module name of the rewriter's imports.
pub const MODULE: &str = wasm_rewriter::abi::IMPORT_MODULE;

/// Frames in flight between a vessel and the dock.
#[derive(Debug, Default)]
pub struct FrameIo {
    /// Values saved since the last `save_point`.
    pending: Vec<Value>,
    /// Frames saved by the current unwind, innermost first.
    saved: Vec<Frame>,
    /// Frames still to hand out, outermost first.
    to_load: VecDeque<Frame>,
    /// The frame being loaded and how many of its values were read.
    loading: Option<(Frame, usize)>,
    /// Frames handed out by this rewind.
    handed_out: usize,
    /// Frames the rewind started with.
    rewind_frames: usize,
    /// Most frames one unwind may save (the call-depth limit).
    max_frames: usize,
}

/// Why the frame exchange failed; each is a trap in the vessel.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("load_point({func}) with no frame left to load")]
    NoFrame { func: u32 },
    #[error("load_point({func}) but the next frame belongs to function {expected}")]
    WrongFunction { func: u32, expected: u32 },
    #[error("frame of function {func}: value {index} loaded as {wanted}, saved as {saved:?}")]
    WrongType {
        func: u32,
        index: usize,
        wanted: &'static str,
        saved: Option<Value>,
    },
    #[error("frame of function {func}: {left} of its values were never loaded")]
    Underconsumed { func: u32, left: usize },
    #[error("load_{wanted} outside of a frame")]
    NoCurrentFrame { wanted: &'static str },
    #[error("unwind saved more than {limit} frames")]
    TooManyFrames { limit: usize },
    #[error("{count} values were saved after the last save_point")]
    DanglingValues { count: usize },
    #[error("the rewind handed out {handed_out} of {total} frames")]
    Incomplete { handed_out: usize, total: usize },
}

impl wasmi::errors::HostError for FrameError {}

impl FrameIo {
    pub fn new(max_frames: usize) -> Self {
        FrameIo {
            max_frames,
            ..Default::default()
        }
    }

    fn save(&mut self, v: Value) {
        self.pending.push(v);
    }

    fn save_point(&mut self, func: u32, point: u32) -> Result<(), FrameError> {
        if self.saved.len() >= self.max_frames {
            return Err(FrameError::TooManyFrames {
                limit: self.max_frames,
            });
        }
        let locals = std::mem::take(&mut self.pending);
        self.saved.push(Frame {
            func,
            point,
            locals,
        });
        Ok(())
    }

    fn finish_loading(&mut self) -> Result<(), FrameError> {
        if let Some((frame, read)) = self.loading.take() {
            if read != frame.locals.len() {
                return Err(FrameError::Underconsumed {
                    func: frame.func,
                    left: frame.locals.len() - read,
                });
            }
        }
        Ok(())
    }

    fn load_point(&mut self, func: u32) -> Result<u32, FrameError> {
        self.finish_loading()?;
        let frame = self
            .to_load
            .pop_front()
            .ok_or(FrameError::NoFrame { func })?;
        if frame.func != func {
            return Err(FrameError::WrongFunction {
                func,
                expected: frame.func,
            });
        }
        let point = frame.point;
        self.loading = Some((frame, 0));
        self.handed_out += 1;
        Ok(point)
    }

    fn load(&mut self, wanted: &'static str) -> Result<Value, FrameError> {
        let (frame, read) = self
            .loading
            .as_mut()
            .ok_or(FrameError::NoCurrentFrame { wanted })?;
        let v = frame.locals.get(*read).copied();
        let ok = matches!(
            (wanted, v),
            ("i32", Some(Value::I32(_)))
                | ("i64", Some(Value::I64(_)))
                | ("f32", Some(Value::F32(_)))
                | ("f64", Some(Value::F64(_)))
        );
        if !ok {
            return Err(FrameError::WrongType {
                func: frame.func,
                index: *read,
                wanted,
                saved: v,
            });
        }
        *read += 1;
        Ok(v.unwrap())
    }

    /// Starts a rewind with `frames`, outermost first.
    pub fn begin_rewind(&mut self, frames: Vec<Frame>) {
        self.rewind_frames = frames.len();
        self.handed_out = 0;
        self.to_load = frames.into();
        self.loading = None;
    }

    /// The pair assertion at the end of a rewind: every frame handed out and
    /// fully loaded.
    pub fn check_rewind_done(&mut self) -> Result<(), FrameError> {
        if self.rewind_frames == 0 {
            return Ok(());
        }
        self.finish_loading()?;
        if self.handed_out != self.rewind_frames || !self.to_load.is_empty() {
            return Err(FrameError::Incomplete {
                handed_out: self.handed_out,
                total: self.rewind_frames,
            });
        }
        self.rewind_frames = 0;
        Ok(())
    }

    /// Whether a rewind is still handing out frames.
    pub fn rewinding(&self) -> bool {
        self.rewind_frames != 0
    }

    /// Takes the frames of a finished unwind, outermost first.
    pub fn take_unwound(&mut self) -> Result<Vec<Frame>, FrameError> {
        if !self.pending.is_empty() {
            return Err(FrameError::DanglingValues {
                count: self.pending.len(),
            });
        }
        let mut frames = std::mem::take(&mut self.saved);
        frames.reverse();
        Ok(frames)
    }
}

/// What the frame imports need from the store's data.
pub trait FrameView {
    fn frames(&mut self) -> &mut FrameIo;
}

/// Adds the ten `meshnode.*` imports to `linker`.
pub fn add_to_linker<T: FrameView + 'static>(linker: &mut Linker<T>) -> Result<(), Error> {
    linker.func_wrap(MODULE, "save_i32", |mut c: Caller<'_, T>, v: i32| {
        c.data_mut().frames().save(Value::I32(v))
    })?;
    linker.func_wrap(MODULE, "save_i64", |mut c: Caller<'_, T>, v: i64| {
        c.data_mut().frames().save(Value::I64(v))
    })?;
    // Floats travel as bits, so a NaN payload survives the trip.
    linker.func_wrap(MODULE, "save_f32", |mut c: Caller<'_, T>, v: wasmi::F32| {
        c.data_mut().frames().save(Value::F32(v.to_bits()))
    })?;
    linker.func_wrap(MODULE, "save_f64", |mut c: Caller<'_, T>, v: wasmi::F64| {
        c.data_mut().frames().save(Value::F64(v.to_bits()))
    })?;
    linker.func_wrap(
        MODULE,
        "save_point",
        |mut c: Caller<'_, T>, func: i32, point: i32| -> Result<(), Error> {
            c.data_mut()
                .frames()
                .save_point(func as u32, point as u32)
                .map_err(Error::host)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "load_point",
        |mut c: Caller<'_, T>, func: i32| -> Result<i32, Error> {
            c.data_mut()
                .frames()
                .load_point(func as u32)
                .map(|p| p as i32)
                .map_err(Error::host)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "load_i32",
        |mut c: Caller<'_, T>| -> Result<i32, Error> {
            match c.data_mut().frames().load("i32").map_err(Error::host)? {
                Value::I32(v) => Ok(v),
                _ => unreachable!("load checked the type"),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "load_i64",
        |mut c: Caller<'_, T>| -> Result<i64, Error> {
            match c.data_mut().frames().load("i64").map_err(Error::host)? {
                Value::I64(v) => Ok(v),
                _ => unreachable!("load checked the type"),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "load_f32",
        |mut c: Caller<'_, T>| -> Result<wasmi::F32, Error> {
            match c.data_mut().frames().load("f32").map_err(Error::host)? {
                Value::F32(v) => Ok(wasmi::F32::from_bits(v)),
                _ => unreachable!("load checked the type"),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "load_f64",
        |mut c: Caller<'_, T>| -> Result<wasmi::F64, Error> {
            match c.data_mut().frames().load("f64").map_err(Error::host)? {
                Value::F64(v) => Ok(wasmi::F64::from_bits(v)),
                _ => unreachable!("load checked the type"),
            }
        },
    )?;
    Ok(())
}

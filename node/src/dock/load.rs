//! Loading: reading a module file, checking it (size, magic, validity,
//! imports, `_start`), instrumenting it for migration, and compiling it
//! into a [`VesselModule`] that vessels are instantiated from.

use std::path::Path;
use std::sync::Arc;

use protocol::snapshot::Hash;
use wasmi::{Engine, Module};

use super::{frames, limits, wasi, DockConfig, DockError, MAX_MODULE_BYTES};

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
        // The engine does not carry the memory limit: instantiation checks
        // memory against the store's; the other limits are the dock's own.
        let unlimited = super::MemoryLimit {
            bytes: u64::MAX,
            limit: limits::Limit::MemoryBytes,
        };
        limits::check_declared(path, &original, unlimited)?;
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
        // Before the rewriter and the compiler spend anything on it.
        limits::check_declared(path, &original, config.memory_limit())?;
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

//! Reassembling the module through `wasm_encoder::reencode::Reencode`.
//!
//! Only the hooks that change something are overridden: function indices
//! shift by the added imports, the type/import/function/global/export
//! sections get entries appended, the code section is replaced by the
//! precomputed bodies, and missing sections are inserted where the spec's
//! section order wants them. The start section is removed before parsing
//! (`Reencode` always re-emits it), and its function becomes an export.

use std::convert::Infallible;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, FunctionSection, GlobalSection,
    GlobalType, ImportSection, InstructionSink, SectionId, TypeSection,
};
use wasmparser::{Parser, Payload, ValType};

use crate::abi::{self, IMPORT_COUNT, IMPORT_NAMES};
use crate::func::{
    enc_val_type, instrument_function, plain_function, Globals, Remap, TypeInterner,
};
use crate::module::{ModuleInfo, Sig};
use crate::{FrameLayout, Report, RewriteConfig, RewriteError, Rewritten};

fn encode_err<E: std::fmt::Display>(e: E) -> RewriteError {
    RewriteError::Encode(e.to_string())
}

/// Signatures of the added imports, in [`IMPORT_NAMES`] order.
fn import_sigs() -> Vec<Sig> {
    use ValType::*;
    let sig = |params: &[ValType], results: &[ValType]| Sig {
        params: params.to_vec(),
        results: results.to_vec(),
    };
    vec![
        sig(&[I32], &[]),
        sig(&[I64], &[]),
        sig(&[F32], &[]),
        sig(&[F64], &[]),
        sig(&[I32, I32], &[]),
        sig(&[], &[I32]),
        sig(&[], &[I64]),
        sig(&[], &[F32]),
        sig(&[], &[F64]),
        sig(&[I32], &[I32]),
    ]
}

/// Where a section goes in a module, in the spec's order.
fn section_rank(id: SectionId) -> u32 {
    match id {
        SectionId::Custom => 0,
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
    }
}

/// The sections the rewriter appends to; each must exist in the output.
const APPENDED: [SectionId; 6] = [
    SectionId::Type,
    SectionId::Import,
    SectionId::Function,
    SectionId::Global,
    SectionId::Export,
    SectionId::Code,
];

struct Rewriter<'a> {
    remap: Remap,
    added_types: Vec<Sig>,
    import_type_indices: Vec<u32>,
    /// Type index of the redrop helper, when there is one.
    redrop: Option<(u32, Vec<u8>)>,
    globals: Globals,
    info: &'a ModuleInfo<'a>,
    bodies: Vec<Vec<u8>>,
    emitted: Vec<SectionId>,
}

impl Rewriter<'_> {
    fn append_types(&self, types: &mut TypeSection) {
        for sig in &self.added_types {
            types.ty().function(
                sig.params.iter().map(|&t| enc_val_type(t)),
                sig.results.iter().map(|&t| enc_val_type(t)),
            );
        }
    }

    fn append_imports(&self, imports: &mut ImportSection) {
        for (name, &ty) in IMPORT_NAMES.iter().zip(&self.import_type_indices) {
            imports.import(abi::IMPORT_MODULE, name, EntityType::Function(ty));
        }
    }

    fn append_functions(&self, functions: &mut FunctionSection) {
        if let Some((ty, _)) = &self.redrop {
            functions.function(*ty);
        }
    }

    fn append_globals(&self, globals: &mut GlobalSection) {
        let mutable = |val_type| GlobalType {
            val_type,
            mutable: true,
            shared: false,
        };
        globals.global(
            mutable(wasm_encoder::ValType::I32),
            &ConstExpr::i32_const(abi::STATE_RUNNING),
        );
        if self.globals.countdown.is_some() {
            globals.global(
                mutable(wasm_encoder::ValType::I32),
                &ConstExpr::i32_const(0),
            );
        }
        if self.globals.data_dropped.is_some() {
            globals.global(
                mutable(wasm_encoder::ValType::I64),
                &ConstExpr::i64_const(0),
            );
        }
    }

    fn append_exports(&self, exports: &mut ExportSection) {
        let info = self.info;
        exports.export(abi::STATE_EXPORT, ExportKind::Global, self.globals.state);
        if let Some(g) = self.globals.countdown {
            exports.export(abi::COUNTDOWN_EXPORT, ExportKind::Global, g);
        }
        if let Some(g) = self.globals.data_dropped {
            exports.export(abi::DATA_DROPPED_EXPORT, ExportKind::Global, g);
        }
        for g in 0..info.num_globals {
            exports.export(
                &format!("{}{g}", abi::GLOBAL_EXPORT_PREFIX),
                ExportKind::Global,
                g,
            );
        }
        if info.has_memory {
            exports.export(abi::MEMORY_EXPORT, ExportKind::Memory, 0);
        }
        if let Some(start) = info.start {
            let f = if start < info.num_imported_funcs {
                start
            } else {
                start + IMPORT_COUNT
            };
            exports.export(abi::START_EXPORT, ExportKind::Func, f);
        }
        if self.redrop.is_some() {
            exports.export(abi::REDROP_EXPORT, ExportKind::Func, self.redrop_index());
        }
    }

    fn redrop_index(&self) -> u32 {
        self.info.func_types.len() as u32 + IMPORT_COUNT
    }

    fn fill_code(&self, code: &mut CodeSection) {
        for body in &self.bodies {
            code.raw(body);
        }
        if let Some((_, body)) = &self.redrop {
            code.raw(body);
        }
    }

    fn needs(&self, id: SectionId) -> bool {
        match id {
            SectionId::Function | SectionId::Code => self.redrop.is_some(),
            _ => true,
        }
    }
}

type Res = Result<(), ReencodeError<Infallible>>;

impl Reencode for Rewriter<'_> {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Infallible>> {
        self.remap.function_index(func)
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Res {
        wasm_encoder::reencode::utils::parse_type_section(self, types, section)?;
        self.append_types(types);
        self.emitted.push(SectionId::Type);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Res {
        wasm_encoder::reencode::utils::parse_import_section(self, imports, section)?;
        self.append_imports(imports);
        self.emitted.push(SectionId::Import);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Res {
        wasm_encoder::reencode::utils::parse_function_section(self, functions, section)?;
        self.append_functions(functions);
        self.emitted.push(SectionId::Function);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Res {
        wasm_encoder::reencode::utils::parse_global_section(self, globals, section)?;
        self.append_globals(globals);
        self.emitted.push(SectionId::Global);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Res {
        wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
        self.append_exports(exports);
        self.emitted.push(SectionId::Export);
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        _section: wasmparser::CodeSectionReader<'_>,
    ) -> Res {
        // The bodies were transformed up front (their types had to be known
        // before the type section was written).
        self.fill_code(code);
        self.emitted.push(SectionId::Code);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Res {
        let limit = before.map_or(u32::MAX, section_rank);
        for id in APPENDED {
            if section_rank(id) >= limit || self.emitted.contains(&id) || !self.needs(id) {
                continue;
            }
            match id {
                SectionId::Type => {
                    let mut s = TypeSection::new();
                    self.append_types(&mut s);
                    module.section(&s);
                }
                SectionId::Import => {
                    let mut s = ImportSection::new();
                    self.append_imports(&mut s);
                    module.section(&s);
                }
                SectionId::Function => {
                    let mut s = FunctionSection::new();
                    self.append_functions(&mut s);
                    module.section(&s);
                }
                SectionId::Global => {
                    let mut s = GlobalSection::new();
                    self.append_globals(&mut s);
                    module.section(&s);
                }
                SectionId::Export => {
                    let mut s = ExportSection::new();
                    self.append_exports(&mut s);
                    module.section(&s);
                }
                SectionId::Code => {
                    let mut s = CodeSection::new();
                    self.fill_code(&mut s);
                    module.section(&s);
                }
                _ => unreachable!("only appended sections are listed"),
            }
            self.emitted.push(id);
        }
        Ok(())
    }
}

/// The module's bytes without its start section. `Reencode::parse_core_module`
/// always re-emits a start section it sees, so it must not see one.
fn strip_start_section(wasm: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::with_capacity(wasm.len());
    let mut pos = 8.min(wasm.len());
    out.extend_from_slice(&wasm[..pos]);
    while pos < wasm.len() {
        let start = pos;
        let id = wasm[pos];
        let mut reader = wasmparser::BinaryReader::new(&wasm[pos + 1..], pos as u64 + 1);
        let size = reader.read_var_u32().map_err(encode_err)? as usize;
        let end = reader.original_position() as usize + size;
        if end > wasm.len() {
            return Err(encode_err("section extends past the end of the module"));
        }
        if id != SectionId::Start as u8 {
            out.extend_from_slice(&wasm[start..end]);
        }
        pos = end;
    }
    Ok(out)
}

fn code_section_size(wasm: &[u8]) -> u64 {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::CodeSectionStart { size, .. }) = payload {
            return u64::from(size);
        }
    }
    0
}

pub(crate) fn rewrite_module(
    wasm: &[u8],
    info: &ModuleInfo<'_>,
    config: &RewriteConfig,
) -> Result<Rewritten, RewriteError> {
    let mut next_global = info.num_globals;
    let mut take_global = || {
        next_global += 1;
        next_global - 1
    };
    let state = take_global();
    let countdown = config.countdown.then(&mut take_global);
    let data_dropped =
        (info.uses_data_drop && !info.passive_segments.is_empty()).then(&mut take_global);
    let globals = Globals {
        state,
        countdown,
        data_dropped,
    };

    let mut types = TypeInterner::new(&info.types);
    let import_type_indices: Vec<u32> =
        import_sigs().into_iter().map(|s| types.intern(s)).collect();
    let mut remap = Remap {
        num_imported_funcs: info.num_imported_funcs,
        shift: IMPORT_COUNT,
    };

    let mut bodies = Vec::with_capacity(info.bodies.len());
    let mut frames: Vec<FrameLayout> = Vec::new();
    let mut factor_percent = 100u64;
    for (i, body) in info.bodies.iter().enumerate() {
        if info.may_unwind[i] {
            let out =
                instrument_function(info, i, &globals, &mut types, &mut remap, config.countdown)?;
            bodies.push(out.body);
            frames.extend(out.layout);
            let (before, after) = out.frame_slots;
            factor_percent = factor_percent.max((after * 100).div_ceil(before));
        } else {
            bodies.push(plain_function(info, body, &globals, &mut remap)?);
        }
    }

    let redrop = match globals.data_dropped {
        Some(g) => {
            let ty = types.intern(Sig {
                params: vec![],
                results: vec![],
            });
            let mut code = Vec::new();
            let mut s = InstructionSink::new(&mut code);
            for (bit, &segment) in info.passive_segments.iter().enumerate() {
                s.global_get(g)
                    .i64_const(1i64 << bit)
                    .i64_and()
                    .i64_const(0)
                    .i64_ne()
                    .if_(wasm_encoder::BlockType::Empty)
                    .data_drop(segment)
                    .end();
            }
            s.end();
            let mut f = wasm_encoder::Function::new([]);
            f.raw(code);
            Some((ty, f.into_raw_body()))
        }
        None => None,
    };

    let mut rewriter = Rewriter {
        remap,
        added_types: types.added.clone(),
        import_type_indices,
        redrop,
        globals,
        info,
        bodies,
        emitted: Vec::new(),
    };
    let stripped = strip_start_section(wasm)?;
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), &stripped)
        .map_err(encode_err)?;
    let out = module.finish();

    let migration_points = frames.iter().map(|f| f.points).sum();
    let report = Report {
        functions_total: info.bodies.len() as u32,
        functions_instrumented: frames.len() as u32,
        migration_points,
        code_section_bytes_before: info.code_section_bytes,
        code_section_bytes_after: code_section_size(&out),
        value_stack_factor_percent: u32::try_from(factor_percent).unwrap_or(u32::MAX),
        frames,
    };
    Ok(Rewritten { wasm: out, report })
}

/// `Reencode` with function bodies copied verbatim.
struct Identity;

impl Reencode for Identity {
    type Error = Infallible;

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Res {
        code.raw(func.as_bytes());
        Ok(())
    }
}

pub(crate) fn identity(wasm: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let mut module = wasm_encoder::Module::new();
    Identity
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(encode_err)?;
    Ok(module.finish())
}

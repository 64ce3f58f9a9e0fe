//! Module analysis: parse, refuse unsupported features, validate, and decide
//! which functions may unwind.

use std::collections::{BTreeSet, HashMap};

use wasmparser::{
    CompositeInnerType, DataKind, ElementItems, FuncToValidate, FunctionBody, KnownCustom, Name,
    Operator, Parser, Payload, TypeRef, ValType, Validator, ValidatorResources,
};

use crate::features::{check_operator, input_features};
use crate::{abi, FuncRef, RewriteConfig, RewriteError, MAX_FUNCTIONS, MAX_PASSIVE_DATA_SEGMENTS};

/// A function signature by value (types are compared structurally: the input
/// has no GC types, so structural equality is wasm's type equality).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Sig {
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

/// How a call site relates to unwinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// The callee never unwinds: plain code.
    Plain,
    /// A wasm callee that may unwind: it restores its own locals on rewind,
    /// so its arguments may be dummies then.
    Direct,
    /// A call of a blocking import: re-issued on rewind with its real
    /// arguments, which are therefore kept in locals.
    Blocking,
    /// A `call_indirect` that may reach a may-unwind function. The table index
    /// is kept in a local; `all_args_real` when a blocking import of the same
    /// type may be in a table (it would be re-issued with these arguments).
    Indirect { all_args_real: bool },
}

/// Everything the transform needs to know about the input module.
pub(crate) struct ModuleInfo<'a> {
    pub types: Vec<Sig>,
    pub num_imported_funcs: u32,
    /// Type index of every function (imports first).
    pub func_types: Vec<u32>,
    pub blocking_import: Vec<bool>,
    pub num_globals: u32,
    pub has_memory: bool,
    pub start: Option<u32>,
    /// Bit of each passive data segment, keyed by data index.
    pub passive_bit: HashMap<u32, u32>,
    /// Passive data segment indices in bit order.
    pub passive_segments: Vec<u32>,
    pub bodies: Vec<FunctionBody<'a>>,
    pub validators: Vec<FuncToValidate<ValidatorResources>>,
    /// Per defined function.
    pub may_unwind: Vec<bool>,
    /// Per defined function: it is on a cycle of the call graph, so its entry
    /// is a migration point (a recursion without loops must be capturable).
    pub recursive: Vec<bool>,
    /// Canonical type index of every type.
    type_canon: Vec<u32>,
    /// Canonical types whose `call_indirect` may reach a may-unwind function.
    indirect_may_unwind: BTreeSet<u32>,
    /// Canonical types of blocking imports that may be in a table.
    indirect_blocking: BTreeSet<u32>,
    pub names: HashMap<u32, String>,
    pub code_section_bytes: u64,
    /// Some function executes `data.drop`.
    pub uses_data_drop: bool,
}

impl ModuleInfo<'_> {
    pub fn func_ref(&self, index: u32) -> FuncRef {
        func_ref(&self.names, index)
    }

    /// Whether every call of `func` (a function index) passes a migration
    /// point that serves an unwind request: its entry is one (it is
    /// recursive, see [`Self::recursive`]).
    pub fn checks_at_entry(&self, func: u32) -> bool {
        func >= self.num_imported_funcs && self.recursive[(func - self.num_imported_funcs) as usize]
    }

    pub fn func_sig(&self, func: u32) -> &Sig {
        &self.types[self.func_types[func as usize] as usize]
    }

    pub fn classify_call(&self, op: &Operator<'_>) -> CallKind {
        match *op {
            Operator::Call { function_index } => {
                if function_index < self.num_imported_funcs {
                    if self.blocking_import[function_index as usize] {
                        CallKind::Blocking
                    } else {
                        CallKind::Plain
                    }
                } else if self.may_unwind[(function_index - self.num_imported_funcs) as usize] {
                    CallKind::Direct
                } else {
                    CallKind::Plain
                }
            }
            Operator::CallIndirect { type_index, .. } => {
                let canon = self.type_canon[type_index as usize];
                if self.indirect_may_unwind.contains(&canon) {
                    CallKind::Indirect {
                        all_args_real: self.indirect_blocking.contains(&canon),
                    }
                } else {
                    CallKind::Plain
                }
            }
            _ => CallKind::Plain,
        }
    }
}

fn func_ref(names: &HashMap<u32, String>, index: u32) -> FuncRef {
    FuncRef {
        index,
        name: names.get(&index).cloned(),
    }
}

fn invalid(e: impl std::fmt::Display) -> RewriteError {
    RewriteError::Invalid {
        message: e.to_string(),
        func: None,
    }
}

fn unsupported(feature: &'static str, detail: impl Into<Option<String>>) -> RewriteError {
    RewriteError::Unsupported {
        feature,
        func: None,
        detail: detail.into(),
    }
}

/// What the scan of one function body found.
#[derive(Default)]
struct BodyFacts {
    has_loop: bool,
    callees: BTreeSet<u32>,
    indirect_types: BTreeSet<u32>,
    data_drop: bool,
}

pub(crate) fn analyze<'a>(
    wasm: &'a [u8],
    config: &RewriteConfig,
) -> Result<ModuleInfo<'a>, RewriteError> {
    // Names first, so that every later error can name its function.
    let names = read_names(wasm);

    let mut types = Vec::new();
    let mut func_types = Vec::new();
    let mut blocking_import = Vec::new();
    let mut num_imported_funcs = 0u32;
    let mut num_globals = 0u32;
    let mut num_memories = 0u32;
    let mut start = None;
    let mut passive_bit = HashMap::new();
    let mut passive_segments = Vec::new();
    let mut bodies = Vec::new();
    let mut referenced = BTreeSet::new();
    let mut facts = Vec::new();
    let mut code_section_bytes = 0u64;

    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding, .. } if encoding != wasmparser::Encoding::Module => {
                return Err(unsupported("component-model", None));
            }
            Payload::TypeSection(reader) => {
                for group in reader {
                    let group = group.map_err(invalid)?;
                    if group.is_explicit_rec_group() {
                        return Err(unsupported("gc", "recursive type group".to_string()));
                    }
                    for sub in group.into_types() {
                        if !sub.is_final || !sub.supertype_idxs.is_empty() {
                            return Err(unsupported("gc", "subtyping".to_string()));
                        }
                        if sub.composite_type.shared {
                            return Err(unsupported("threads", "shared type".to_string()));
                        }
                        match &sub.composite_type.inner {
                            CompositeInnerType::Func(ft) => types.push(Sig {
                                params: ft.params().to_vec(),
                                results: ft.results().to_vec(),
                            }),
                            CompositeInnerType::Cont(_) => {
                                return Err(unsupported("stack-switching", None))
                            }
                            _ => return Err(unsupported("gc", "struct or array type".to_string())),
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for group in reader.clone() {
                    if !matches!(group.map_err(invalid)?, wasmparser::Imports::Single(..)) {
                        return Err(unsupported("compact-imports", None));
                    }
                }
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    if import.module == abi::IMPORT_MODULE
                        || import.name.starts_with(abi::RESERVED_PREFIX)
                    {
                        return Err(RewriteError::ReservedName(format!(
                            "{}.{}",
                            import.module, import.name
                        )));
                    }
                    match import.ty {
                        TypeRef::Func(ty) | TypeRef::FuncExact(ty) => {
                            num_imported_funcs += 1;
                            func_types.push(ty);
                            blocking_import.push(
                                config
                                    .blocking_imports
                                    .iter()
                                    .any(|(m, n)| m == import.module && n == import.name),
                            );
                        }
                        TypeRef::Memory(mem) => {
                            num_memories += 1;
                            check_memory(&mem)?;
                        }
                        TypeRef::Global(g) => {
                            num_globals += 1;
                            check_global(&g)?;
                        }
                        TypeRef::Table(t) => {
                            if t.table64 {
                                return Err(unsupported("memory64", "64-bit table".to_string()));
                            }
                        }
                        TypeRef::Tag(_) => return Err(unsupported("exception-handling", None)),
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty.map_err(invalid)?);
                }
                if func_types.len() as u64 > u64::from(MAX_FUNCTIONS) {
                    return Err(RewriteError::Limit {
                        limit: "MAX_FUNCTIONS",
                        max: MAX_FUNCTIONS.into(),
                        actual: func_types.len() as u64,
                        func: None,
                    });
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(invalid)?;
                    if table.ty.table64 {
                        return Err(unsupported("memory64", "64-bit table".to_string()));
                    }
                    if let wasmparser::TableInit::Expr(_) = table.init {
                        return Err(unsupported(
                            "function-references",
                            "table with an initializer".to_string(),
                        ));
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for mem in reader {
                    num_memories += 1;
                    check_memory(&mem.map_err(invalid)?)?;
                }
            }
            Payload::TagSection(_) => return Err(unsupported("exception-handling", None)),
            Payload::GlobalSection(reader) => {
                for global in reader {
                    num_globals += 1;
                    let global = global.map_err(invalid)?;
                    check_global(&global.ty)?;
                    scan_const_expr(&global.init_expr, &mut referenced)?;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.name.starts_with(abi::RESERVED_PREFIX) {
                        return Err(RewriteError::ReservedName(export.name.to_string()));
                    }
                }
            }
            Payload::StartSection { func, .. } => start = Some(func),
            Payload::ElementSection(reader) => {
                for element in reader {
                    let element = element.map_err(invalid)?;
                    match element.items {
                        ElementItems::Functions(funcs) => {
                            for f in funcs {
                                referenced.insert(f.map_err(invalid)?);
                            }
                        }
                        ElementItems::Expressions(_, exprs) => {
                            for expr in exprs {
                                scan_const_expr(&expr.map_err(invalid)?, &mut referenced)?;
                            }
                        }
                    }
                }
            }
            Payload::DataSection(reader) => {
                for (index, data) in reader.into_iter().enumerate() {
                    let data = data.map_err(invalid)?;
                    if let DataKind::Passive = data.kind {
                        let bit = passive_segments.len() as u32;
                        passive_bit.insert(index as u32, bit);
                        passive_segments.push(index as u32);
                    }
                }
            }
            Payload::CodeSectionStart { size, .. } => code_section_bytes = u64::from(size),
            Payload::CodeSectionEntry(body) => {
                let index = num_imported_funcs + bodies.len() as u32;
                let fact = scan_body(&body, &mut referenced).map_err(|e| match e {
                    ScanError::Feature(feature, detail) => RewriteError::Unsupported {
                        feature,
                        func: Some(func_ref(&names, index)),
                        detail: Some(detail),
                    },
                    ScanError::Parse(e) => RewriteError::Invalid {
                        message: e.to_string(),
                        func: Some(func_ref(&names, index)),
                    },
                })?;
                facts.push(fact);
                bodies.push(body);
            }
            _ => {}
        }
    }
    if num_memories > 1 {
        return Err(unsupported(
            "multi-memory",
            format!("{num_memories} memories"),
        ));
    }

    // Validate with exactly the supported features. Keep each function's
    // validator seed: the transform re-validates bodies to learn the operand
    // stack types at every instruction.
    let mut validator = Validator::new_with_features(input_features());
    let mut validators = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        match validator
            .payload(&payload)
            .map_err(|e| named_or_invalid(e, None))?
        {
            wasmparser::ValidPayload::Func(seed, body) => {
                let index = seed.index;
                let again = FuncToValidate {
                    resources: seed.resources.clone(),
                    index: seed.index,
                    ty: seed.ty,
                    features: seed.features,
                };
                seed.into_validator(Default::default())
                    .validate(&body)
                    .map_err(|e| named_or_invalid(e, Some(func_ref(&names, index))))?;
                validators.push(again);
            }
            wasmparser::ValidPayload::Parser(_) => {
                return Err(unsupported("component-model", None))
            }
            _ => {}
        }
    }

    let uses_data_drop = facts.iter().any(|f| f.data_drop);
    if uses_data_drop && passive_segments.len() as u64 > u64::from(MAX_PASSIVE_DATA_SEGMENTS) {
        return Err(RewriteError::Limit {
            limit: "MAX_PASSIVE_DATA_SEGMENTS",
            max: MAX_PASSIVE_DATA_SEGMENTS.into(),
            actual: passive_segments.len() as u64,
            func: None,
        });
    }
    let may_unwind_result = may_unwind(
        &types,
        &func_types,
        &blocking_import,
        num_imported_funcs,
        &facts,
        &referenced,
    );

    Ok(ModuleInfo {
        types,
        num_imported_funcs,
        func_types,
        blocking_import,
        num_globals,
        has_memory: num_memories > 0,
        start,
        passive_bit,
        passive_segments,
        bodies,
        validators,
        may_unwind: may_unwind_result.may_unwind,
        recursive: may_unwind_result.recursive,
        type_canon: may_unwind_result.type_canon,
        indirect_may_unwind: may_unwind_result.indirect_may_unwind,
        indirect_blocking: may_unwind_result.indirect_blocking,
        names,
        code_section_bytes,
        uses_data_drop,
    })
}

/// A validation error, as `Unsupported` when wasmparser's message names a
/// disabled proposal (the explicit scan names most features first; this
/// catches the rest, such as typed references in signatures).
fn named_or_invalid(e: wasmparser::BinaryReaderError, func: Option<FuncRef>) -> RewriteError {
    const NAMED: [(&str, &str); 12] = [
        ("the gc feature", "gc"),
        ("the exception handling feature", "exception-handling"),
        ("the simd feature", "simd"),
        ("the threads feature", "threads"),
        ("the memory64 feature", "memory64"),
        ("the multi-memory feature", "multi-memory"),
        ("the tail call feature", "tail-call"),
        ("the function references feature", "function-references"),
        ("the extended const feature", "extended-const"),
        ("the custom page sizes feature", "custom-page-sizes"),
        ("the wide arithmetic feature", "wide-arithmetic"),
        ("the stack switching feature", "stack-switching"),
    ];
    let message = e.to_string();
    let lower = message.to_lowercase().replace(['-', '_'], " ");
    match NAMED.iter().find(|(phrase, _)| lower.contains(phrase)) {
        Some(&(_, feature)) => RewriteError::Unsupported {
            feature,
            func,
            detail: Some(message),
        },
        None if lower.contains("constant expression required") => RewriteError::Unsupported {
            feature: "extended-const",
            func,
            detail: Some(message),
        },
        None => RewriteError::Invalid { message, func },
    }
}

fn check_memory(mem: &wasmparser::MemoryType) -> Result<(), RewriteError> {
    if mem.memory64 {
        return Err(unsupported("memory64", None));
    }
    if mem.shared {
        return Err(unsupported("threads", "shared memory".to_string()));
    }
    if mem.page_size_log2.is_some() {
        return Err(unsupported("custom-page-sizes", None));
    }
    Ok(())
}

fn check_global(g: &wasmparser::GlobalType) -> Result<(), RewriteError> {
    if g.shared {
        return Err(unsupported("threads", "shared global".to_string()));
    }
    if g.mutable && g.content_type.is_reference_type() {
        // A reference cannot be serialized into a snapshot.
        return Err(unsupported(
            "mutable reference-typed global",
            format!("global of type {}", g.content_type),
        ));
    }
    if g.content_type == ValType::V128 {
        return Err(unsupported("simd", "v128 global".to_string()));
    }
    Ok(())
}

fn scan_const_expr(
    expr: &wasmparser::ConstExpr<'_>,
    referenced: &mut BTreeSet<u32>,
) -> Result<(), RewriteError> {
    let mut reader = expr.get_operators_reader();
    while !reader.eof() {
        if let Operator::RefFunc { function_index } = reader.read().map_err(invalid)? {
            referenced.insert(function_index);
        }
    }
    Ok(())
}

enum ScanError {
    Feature(&'static str, String),
    Parse(wasmparser::BinaryReaderError),
}

impl From<wasmparser::BinaryReaderError> for ScanError {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        ScanError::Parse(e)
    }
}

fn scan_body(
    body: &FunctionBody<'_>,
    referenced: &mut BTreeSet<u32>,
) -> Result<BodyFacts, ScanError> {
    let mut facts = BodyFacts::default();
    for local in body.get_locals_reader()? {
        let (_, ty) = local?;
        if ty == ValType::V128 {
            return Err(ScanError::Feature("simd", "v128 local".to_string()));
        }
    }
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let op = reader.read()?;
        if let Err(feature) = check_operator(&op) {
            return Err(ScanError::Feature(feature, format!("instruction {op:?}")));
        }
        match op {
            Operator::Loop { .. } => facts.has_loop = true,
            Operator::Call { function_index } => {
                facts.callees.insert(function_index);
            }
            Operator::CallIndirect { type_index, .. } => {
                facts.indirect_types.insert(type_index);
            }
            Operator::RefFunc { function_index } => {
                referenced.insert(function_index);
            }
            Operator::DataDrop { .. } => facts.data_drop = true,
            _ => {}
        }
    }
    Ok(facts)
}

struct MayUnwind {
    may_unwind: Vec<bool>,
    recursive: Vec<bool>,
    type_canon: Vec<u32>,
    indirect_may_unwind: BTreeSet<u32>,
    indirect_blocking: BTreeSet<u32>,
}

/// The call-graph fixpoint: a function may unwind if it has a loop, calls a
/// blocking import or a may-unwind function, or makes an indirect call whose
/// type matches a may-unwind function (or blocking import) that can be in a
/// table. Tables cannot be mutated (refused), so only functions named in
/// element segments or by `ref.func` can be reached indirectly.
fn may_unwind(
    types: &[Sig],
    func_types: &[u32],
    blocking_import: &[bool],
    num_imported_funcs: u32,
    facts: &[BodyFacts],
    referenced: &BTreeSet<u32>,
) -> MayUnwind {
    let mut first_of: HashMap<&Sig, u32> = HashMap::new();
    let type_canon: Vec<u32> = types
        .iter()
        .enumerate()
        .map(|(i, sig)| *first_of.entry(sig).or_insert(i as u32))
        .collect();
    let canon_of_func = |f: u32| type_canon[func_types[f as usize] as usize];

    let indirect_blocking: BTreeSet<u32> = referenced
        .iter()
        .filter(|&&f| f < num_imported_funcs && blocking_import[f as usize])
        .map(|&f| canon_of_func(f))
        .collect();

    // Call edges between defined functions; an indirect call may reach every
    // referenced function of its type.
    let mut referenced_by_type: HashMap<u32, Vec<u32>> = HashMap::new();
    for &f in referenced {
        if f >= num_imported_funcs {
            referenced_by_type
                .entry(canon_of_func(f))
                .or_default()
                .push(f - num_imported_funcs);
        }
    }
    let edges: Vec<Vec<u32>> = facts
        .iter()
        .map(|fact| {
            let mut out: BTreeSet<u32> = fact
                .callees
                .iter()
                .filter(|&&c| c >= num_imported_funcs)
                .map(|&c| c - num_imported_funcs)
                .collect();
            for t in &fact.indirect_types {
                if let Some(fs) = referenced_by_type.get(&type_canon[*t as usize]) {
                    out.extend(fs);
                }
            }
            out.into_iter().collect()
        })
        .collect();
    let recursive = on_cycle(&edges);

    let mut may = recursive.clone();
    let mut indirect = indirect_blocking.clone();
    for (i, &m) in may.iter().enumerate() {
        let f = num_imported_funcs + i as u32;
        if m && referenced.contains(&f) {
            indirect.insert(canon_of_func(f));
        }
    }
    loop {
        let mut changed = false;
        for (i, fact) in facts.iter().enumerate() {
            if may[i] {
                continue;
            }
            let calls_unwinding = fact.callees.iter().any(|&c| {
                if c < num_imported_funcs {
                    blocking_import[c as usize]
                } else {
                    may[(c - num_imported_funcs) as usize]
                }
            });
            let indirect_unwinding = fact
                .indirect_types
                .iter()
                .any(|&t| indirect.contains(&type_canon[t as usize]));
            if fact.has_loop || calls_unwinding || indirect_unwinding {
                may[i] = true;
                changed = true;
                let f = num_imported_funcs + i as u32;
                if referenced.contains(&f) {
                    indirect.insert(canon_of_func(f));
                }
            }
        }
        if !changed {
            break;
        }
    }
    MayUnwind {
        may_unwind: may,
        recursive,
        type_canon,
        indirect_may_unwind: indirect,
        indirect_blocking,
    }
}

/// Which nodes lie on a cycle (Tarjan's strongly connected components,
/// iterative so that deep call graphs cannot overflow the Rust stack).
fn on_cycle(edges: &[Vec<u32>]) -> Vec<bool> {
    const UNVISITED: u32 = u32::MAX;
    let n = edges.len();
    let mut index = vec![UNVISITED; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut result = vec![false; n];
    let mut next_index = 0u32;
    // (node, position in its edge list)
    let mut work: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNVISITED {
            continue;
        }
        work.push((root, 0));
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if *pos == 0 && index[v] == UNVISITED {
                index[v] = next_index;
                low[v] = next_index;
                next_index += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(*pos) {
                *pos += 1;
                let w = w as usize;
                if w == v {
                    result[v] = true;
                }
                if index[w] == UNVISITED {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    for w in component {
                        result[w] = true;
                    }
                }
            }
        }
    }
    result
}

/// Function names from the name section, best effort: a malformed name
/// section only costs us names in error messages.
fn read_names(wasm: &[u8]) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::CustomSection(section)) = payload else {
            if payload.is_err() {
                break;
            }
            continue;
        };
        if let KnownCustom::Name(reader) = section.as_known() {
            for sub in reader.into_iter().flatten() {
                if let Name::Function(map) = sub {
                    for naming in map.into_iter().flatten() {
                        names.insert(naming.index, naming.name.to_string());
                    }
                }
            }
        }
    }
    names
}

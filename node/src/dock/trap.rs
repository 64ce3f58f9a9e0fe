//! Naming the wasm function a trap happened in.
//!
//! wasmi records where a wasm execution ended with a trap (a small patch,
//! see `vendor/README.md`), and [`wasmi::Module::trap_func_index`] turns
//! that into the index of the function in the module as it ran. For a
//! migratable vessel that is the instrumented module, whose function
//! indices are shifted by the rewriter's imports; the report names the
//! function of the module as deployed: by its index there, and by its name
//! from that module's `name` section when it has one.
//!
//! Nothing here runs unless a vessel traps: a vessel only keeps two shared
//! handles, and the name section is read when a report needs it.

use std::sync::Arc;

use wasmi::Module;
use wasmparser::{KnownCustom, Name, Parser, Payload, TypeRef};

/// Longest function name a report prints, in characters: a line must stay
/// readable whatever the name section holds.
const MAX_NAME_CHARS: usize = 200;

/// What a vessel needs to name the function a trap happened in.
#[derive(Clone)]
pub(crate) struct TrapSite {
    /// The module as it runs (instrumented or not).
    module: Module,
    /// The module as deployed, read only when naming a function.
    original: Arc<Vec<u8>>,
    /// Whether `module` is the rewriter's output for `original`.
    instrumented: bool,
}

impl TrapSite {
    pub(crate) fn new(module: &Module, original: &Arc<Vec<u8>>, instrumented: bool) -> Self {
        TrapSite {
            module: module.clone(),
            original: Arc::clone(original),
            instrumented,
        }
    }

    /// ` in function `NAME` (func[N])`, or ` in func[N]` when the module has
    /// no name for it, where N is the index in the module as deployed; empty
    /// when wasmi cannot tell where `error` happened (or it happened in a
    /// function the rewriter added). Cold: it runs once, when a vessel ends.
    #[cold]
    #[inline(never)]
    pub(crate) fn describe(&self, error: &wasmi::Error) -> String {
        let Some(index) = self.module.trap_func_index(error) else {
            return String::new();
        };
        let deployed = Deployed::read(&self.original);
        let index = if self.instrumented {
            match wasm_rewriter::abi::input_func_index(
                index,
                deployed.imported_funcs,
                deployed.defined_funcs,
            ) {
                Some(index) => index,
                None => return String::new(),
            }
        } else {
            index
        };
        match func_name(&self.original, index) {
            Some(name) => format!(" in function `{}` (func[{index}])", printable(&name)),
            None => format!(" in func[{index}]"),
        }
    }
}

/// The function counts of the module as deployed.
struct Deployed {
    imported_funcs: u32,
    defined_funcs: u32,
}

impl Deployed {
    /// Best effort: the module was validated before it ran.
    fn read(wasm: &[u8]) -> Self {
        let mut d = Deployed {
            imported_funcs: 0,
            defined_funcs: 0,
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload {
                Ok(Payload::ImportSection(reader)) => {
                    for import in reader.into_imports().flatten() {
                        if matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                            d.imported_funcs += 1;
                        }
                    }
                }
                Ok(Payload::FunctionSection(reader)) => d.defined_funcs = reader.count(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        d
    }
}

/// The name the `name` section of `wasm` gives function `index`, if any.
fn func_name(wasm: &[u8], index: u32) -> Option<String> {
    for payload in Parser::new(0).parse_all(wasm) {
        let section = match payload {
            Ok(Payload::CustomSection(section)) => section,
            Ok(_) => continue,
            Err(_) => return None,
        };
        let KnownCustom::Name(reader) = section.as_known() else {
            continue;
        };
        for sub in reader.into_iter().flatten() {
            if let Name::Function(map) = sub {
                if let Some(naming) = map.into_iter().flatten().find(|n| n.index == index) {
                    return Some(naming.name.to_string());
                }
            }
        }
    }
    None
}

/// `name` fit for one line of a report: control characters escaped, and
/// cut short if it is very long.
fn printable(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == MAX_NAME_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_names_stay_on_one_line() {
        assert_eq!(printable("crash_here"), "crash_here");
        assert_eq!(printable("a\nb"), "a\\nb");
        let long = "x".repeat(MAX_NAME_CHARS + 5);
        assert_eq!(printable(&long).chars().count(), MAX_NAME_CHARS + 1);
    }

    #[test]
    fn counts_and_names_of_the_deployed_module() {
        let wasm = wat::parse_str(
            r#"(module
                 (import "m" "f" (func $imp))
                 (import "m" "g" (global i32))
                 (func $a) (func) (func $c))"#,
        )
        .unwrap();
        let d = Deployed::read(&wasm);
        assert_eq!((d.imported_funcs, d.defined_funcs), (1, 3));
        assert_eq!(func_name(&wasm, 0).as_deref(), Some("imp"));
        assert_eq!(func_name(&wasm, 1).as_deref(), Some("a"));
        assert_eq!(func_name(&wasm, 2), None);
        assert_eq!(func_name(&wasm, 3).as_deref(), Some("c"));
    }
}

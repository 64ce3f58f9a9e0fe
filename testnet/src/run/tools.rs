//! What a run needs from the machine, found or built before anything
//! starts: the meshnode binaries (native, and aarch64 under qemu) and the
//! scenario's programs (C sources compiled with clang).
//!
//! A tool this machine lacks is a skip (exit 77: it cannot run here, with
//! the reason); a program that does not compile is an error (exit 2, with
//! the compiler's message): a broken scenario never passes as skipped.

use std::path::{Path, PathBuf};

use crate::outcome::Outcome;
use crate::scenario::{Arch, Program, ProgramSource, Scenario};

/// What Debian packages give clang its wasm32-wasi target.
const CLANG_PACKAGES: &str = "Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32";

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The native meshnode: --meshnode, $MESHNODE_BIN, next to this binary (a
/// cargo target dir), or on PATH.
pub fn find_meshnode(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--meshnode {}: no such file", p.display()))
        };
    }
    if let Some(p) = std::env::var_os("MESHNODE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("MESHNODE_BIN={}: no such file", p.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .and_then(|dir| {
            [dir.join("meshnode"), dir.join("../meshnode")]
                .into_iter()
                .find(|c| c.is_file())
        });
    beside.or_else(|| which("meshnode")).ok_or_else(|| {
        "no meshnode binary: build it (`cargo build -p meshnode`), or pass --meshnode PATH or set MESHNODE_BIN".into()
    })
}

/// For each foreign CPU the scenario's nodes run on, its qemu-user and its
/// meshnode build, or why the scenario cannot run here.
pub fn find_foreign(sc: &Scenario) -> Result<Vec<(Arch, PathBuf, PathBuf)>, String> {
    let mut found = Vec::new();
    for arch in Arch::FOREIGN {
        let on: Vec<&str> = sc
            .nodes
            .iter()
            .filter(|n| n.arch == arch)
            .map(|n| n.name.as_str())
            .collect();
        let Some(f) = arch.foreign().filter(|_| !on.is_empty()) else {
            continue;
        };
        let (who, cpu) = (on.join(", "), arch.name());
        let bin = match std::env::var_os(f.bin_env) {
            Some(b) if Path::new(&b).is_file() => PathBuf::from(b),
            Some(b) => {
                return Err(format!(
                    "nodes {who} are {cpu}, and {}={} is not a file (scripts/build-cross.sh builds it)",
                    f.bin_env,
                    Path::new(&b).display()
                ))
            }
            None => {
                return Err(format!(
                    "nodes {who} are {cpu}: set {} to the {cpu} meshnode (scripts/build-cross.sh builds it)",
                    f.bin_env
                ))
            }
        };
        let qemu = std::env::var_os(f.qemu_env)
            .map(PathBuf::from)
            .or_else(|| which(&format!("{}-static", f.qemu)))
            .or_else(|| which(f.qemu))
            .ok_or_else(|| {
                format!(
                    "nodes {who} are {cpu}: no {}-static on PATH (install qemu-user-static)",
                    f.qemu
                )
            })?;
        found.push((arch, qemu, bin));
    }
    Ok(found)
}

/// The frozen older build, when a node starts on it (`build = "frozen"`),
/// or why the scenario cannot run here.
pub fn find_frozen(sc: &Scenario) -> Result<Option<PathBuf>, String> {
    let on: Vec<&str> = sc
        .nodes
        .iter()
        .filter(|n| n.frozen)
        .map(|n| n.name.as_str())
        .collect();
    if on.is_empty() {
        return Ok(None);
    }
    let who = on.join(", ");
    match std::env::var_os("MESHNODE_FROZEN_BIN") {
        Some(b) if Path::new(&b).is_file() => Ok(Some(PathBuf::from(b))),
        Some(b) => Err(format!(
            "nodes {who} start on the frozen build, and MESHNODE_FROZEN_BIN={} is not a file (scripts/build-frozen.sh builds it)",
            Path::new(&b).display()
        )),
        None => Err(format!(
            "nodes {who} start on the frozen build: set MESHNODE_FROZEN_BIN (scripts/build-frozen.sh builds it)"
        )),
    }
}

/// Compiles or locates the programs that will be used (by servers and by
/// vessels that are not pending), into `out/programs`.
pub fn build_programs(sc: &Scenario, out: &Path) -> Result<Vec<Option<PathBuf>>, Outcome> {
    let mut used = vec![false; sc.programs.len()];
    for s in &sc.servers {
        used[s.program] = true;
    }
    for v in sc.vessels.iter().filter(|v| v.pending.is_none()) {
        used[v.program] = true;
    }
    let dir = out.join("programs");
    let mut wasm = Vec::new();
    for (p, used) in sc.programs.iter().zip(used) {
        wasm.push(if used {
            Some(program(sc, p, &dir)?)
        } else {
            None
        });
    }
    Ok(wasm)
}

/// The module of one program.
fn program(sc: &Scenario, p: &Program, dir: &Path) -> Result<PathBuf, Outcome> {
    let (ProgramSource::Wasm(file) | ProgramSource::C(file)) = &p.source;
    if !file.is_file() {
        return Err(Outcome::Error(format!(
            "{}: program {}: {} is not a file",
            sc.file.display(),
            p.name,
            file.display()
        )));
    }
    match &p.source {
        ProgramSource::Wasm(w) => Ok(w.clone()),
        ProgramSource::C(src) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Outcome::Error(format!("cannot create {}: {e}", dir.display())))?;
            compile_c(&p.name, src, &dir.join(format!("{}.wasm", p.name)))
        }
    }
}

/// `clang --target=wasm32-wasi`: no clang is a skip; a compile that fails
/// is an error that shows the compiler's message.
pub fn compile_c(name: &str, src: &Path, dst: &Path) -> Result<PathBuf, Outcome> {
    let r = std::process::Command::new("clang")
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2"])
        .arg(src)
        .arg("-o")
        .arg(dst)
        .output();
    match r {
        Ok(o) if o.status.success() => Ok(dst.to_path_buf()),
        Ok(o) => Err(Outcome::Error(format!(
            "program {name}: clang --target=wasm32-wasi failed on {} ({}); if the toolchain is incomplete, install {CLANG_PACKAGES}. The compiler said:\n{}",
            src.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Err(e) => Err(Outcome::Skipped(format!(
            "program {name} needs clang for wasm32-wasi, which cannot run here ({e}); install {CLANG_PACKAGES}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clang_runs() -> bool {
        std::process::Command::new("clang")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn a_program_that_does_not_compile_is_an_error_with_the_compilers_words() {
        if !clang_runs() {
            eprintln!("skipped: no clang on this machine to compile with");
            return;
        }
        let dir = std::env::temp_dir().join(format!("testnet-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("broken.c");
        std::fs::write(&src, "int main(void) { return undeclared_name; }\n").unwrap();
        let r = compile_c("broken", &src, &dir.join("broken.wasm"));
        let _ = std::fs::remove_dir_all(&dir);
        match r {
            Err(Outcome::Error(e)) => {
                assert!(e.starts_with("program broken: clang"), "{e}");
                assert!(e.contains("undeclared_name"), "the compiler's message: {e}");
            }
            Err(Outcome::Skipped(s)) => panic!("a failed compile was a skip: {s}"),
            other => panic!("expected an error, got {:?}", other.map_err(|o| o.code())),
        }
    }
}

//! Migration differential tests: every corpus program run plainly and in
//! storm mode (`--migrate-every N`: unwind at every Nth migration point,
//! serialize the whole vessel to bytes, drop it with every host handle, and
//! resume it from those bytes) must give identical stdout, exit code and
//! files.

use crate::corpus::{corpus_names, corpus_wasm_flavor, run_program, spec, Flavor, Runtime};

/// The N of `--migrate-every`: every point, a prime that lands at varied
/// places, and a large one that migrates rarely.
const EVERY: [u32; 3] = [1, 7, 1000];

/// Goal: a vessel migrated at every Nth point behaves exactly like one that
/// never moved. Method: for every corpus program (both compile flavours)
/// and each N, compare the storm run with a plain meshnode run.
#[test]
fn storm_mode_matches_plain_runs_for_every_corpus_program() {
    let _cpu = crate::support::shared_cpu();
    let mut failures = Vec::new();
    let names = corpus_names();
    let jobs: Vec<(String, Flavor, u32)> = names
        .iter()
        .flat_map(|n| {
            Flavor::ALL
                .into_iter()
                .flat_map(move |f| EVERY.into_iter().map(move |e| (n.clone(), f, e)))
        })
        .collect();
    let results = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((name, flavor, every)) = jobs.get(i) else {
                    break;
                };
                let s = spec(name);
                let wasm = corpus_wasm_flavor(name, *flavor);
                let plain = run_program(Runtime::Meshnode, &wasm, &s, None);
                let storm = run_program(Runtime::MeshnodeStorm(*every), &wasm, &s, None);
                let mut problems = Vec::new();
                if plain.code != storm.code
                    && !(s.trap && plain.code != Some(0) && storm.code != Some(0))
                {
                    problems.push(format!("exit {:?} vs {:?}", plain.code, storm.code));
                }
                if plain.stdout != storm.stdout {
                    problems.push(format!(
                        "stdout differs:\n--- plain\n{}\n--- storm\n{}",
                        String::from_utf8_lossy(&plain.stdout),
                        String::from_utf8_lossy(&storm.stdout)
                    ));
                }
                if format!("{:?}", plain.tree) != format!("{:?}", storm.tree) {
                    problems.push("files differ".into());
                }
                let stderr = String::from_utf8_lossy(&storm.stderr);
                let migrations: u64 = stderr
                    .lines()
                    .find_map(|l| l.split("storm mode: ").nth(1))
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                // Every program runs libc loops, so migrating at every point
                // must migrate; a storm that never moved proves nothing.
                if *every == 1 && migrations == 0 {
                    problems.push(format!("--migrate-every 1 never migrated: {stderr}"));
                }
                if stderr.contains("panicked") {
                    problems.push(format!("panic: {}", String::from_utf8_lossy(&storm.stderr)));
                }
                results
                    .lock()
                    .unwrap()
                    .push((name.clone(), *flavor, *every, problems));
            });
        }
    });
    for (name, flavor, every, problems) in results.into_inner().unwrap() {
        if !problems.is_empty() {
            failures.push(format!(
                "{name} ({flavor:?}) --migrate-every {every}: {}",
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} storm runs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Goal: the CPU benchmark programs, among them a hash table whose hot loop
/// makes indirect calls and a deep recursion, survive storm migration too.
/// Method: as above, with one iteration each.
#[test]
fn storm_mode_matches_plain_runs_for_the_benchmark_programs() {
    let _cpu = crate::support::shared_cpu();
    let mut failures = Vec::new();
    for name in [
        "hashtable",
        "recursion",
        "matmul",
        "nbody",
        "sha256",
        "lz77",
    ] {
        let wasm = crate::corpus::bench_wasm(name);
        let s = crate::corpus::Spec {
            name: name.to_string(),
            dirs: vec![],
            ..Default::default()
        };
        let args = vec!["1".to_string()];
        let plain = run_program(Runtime::Meshnode, &wasm, &s, Some(&args));
        assert_eq!(
            plain.code,
            Some(0),
            "{name} plain run failed: {}",
            String::from_utf8_lossy(&plain.stderr)
        );
        for every in EVERY {
            let storm = run_program(Runtime::MeshnodeStorm(every), &wasm, &s, Some(&args));
            if storm.code != plain.code || storm.stdout != plain.stdout {
                failures.push(format!(
                    "{name} --migrate-every {every}: exit {:?} vs {:?}, stdout {:?} vs {:?}, stderr {}",
                    plain.code,
                    storm.code,
                    String::from_utf8_lossy(&plain.stdout),
                    String::from_utf8_lossy(&storm.stdout),
                    String::from_utf8_lossy(&storm.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Goal: the WAT tests (every preview1 function's errno cases, spliced into
/// the prelude) behave the same migrated at every Nth point as unmoved:
/// same output, exit code and files. Method: each WAT program is assembled
/// to a module file and run by the real binary, plainly and in storm mode,
/// each run in a fresh sandbox directory.
#[test]
fn storm_mode_matches_plain_runs_for_every_wat_test() {
    let _cpu = crate::support::shared_cpu();
    let dir = std::path::Path::new(crate::wasi_errno::WAT_DIR);
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("errno_") && n.ends_with(".wat"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "WAT tests not found in {}", dir.display());
    for file in &files {
        let body = std::fs::read_to_string(dir.join(file)).unwrap();
        let bytes = wat::parse_str(crate::wasi_errno::expand(&body)).unwrap();
        let wasm = scratch.path().join(file.replace(".wat", ".wasm"));
        std::fs::write(&wasm, bytes).unwrap();
        let run = |every: Option<u32>| {
            let root = tempfile::tempdir().unwrap();
            let sandbox = root.path().join("sandbox");
            std::fs::create_dir(&sandbox).unwrap();
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"));
            c.arg("run");
            if let Some(n) = every {
                c.args(["--migrate-every", &n.to_string(), "--max-migrations", "400"]);
            }
            c.arg("--dir")
                .arg(format!("{}::/sandbox", sandbox.display()))
                .arg(&wasm)
                .stdin(std::process::Stdio::null());
            let out = c.output().unwrap();
            let tree = format!("{:?}", crate::support::tree(&sandbox));
            (out.status.code(), out.stdout, out.stderr, tree)
        };
        let plain = run(None);
        assert_eq!(
            plain.0,
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&plain.2)
        );
        for every in EVERY {
            let storm = run(Some(every));
            let stderr = String::from_utf8_lossy(&storm.2);
            if storm.0 != plain.0 || storm.1 != plain.1 || storm.3 != plain.3 {
                failures.push(format!(
                    "{file} --migrate-every {every}: exit {:?} vs {:?}; stdout same: {}; files same: {}; stderr: {stderr}",
                    plain.0,
                    storm.0,
                    storm.1 == plain.1,
                    storm.3 == plain.3
                ));
            }
            if every == 1 && !stderr.contains("storm mode: ") {
                failures.push(format!(
                    "{file}: --migrate-every 1 never migrated: {stderr}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

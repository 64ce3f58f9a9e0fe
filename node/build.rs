//! Assembles the WAT programs the binary carries (`meshnode demo`'s ticker,
//! the snapshot fuzz oracle's fixture) at build time, so the binary needs no
//! WAT parser.

fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["ticker", "snapshot_fixture"] {
        let src = format!("wat/{name}.wat");
        println!("cargo:rerun-if-changed={src}");
        let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let wasm = wat::parse_str(&text).unwrap_or_else(|e| panic!("{src}: {e}"));
        std::fs::write(out.join(format!("{name}.wasm")), wasm).expect("write to OUT_DIR");
    }
}

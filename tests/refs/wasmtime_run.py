#!/usr/bin/env python3
"""Reference runner: wasmtime (the `wasmtime` package on PyPI, which embeds the
real wasmtime runtime), with the same command line as `meshnode run`:

    python3 tests/refs/wasmtime_run.py [--dir HOST[::GUEST]]... [--env KEY[=VALUE]]... APP.wasm [ARGS...]

Options come before the module; everything after it belongs to the program.
stdin/stdout/stderr are this process's own. The exit code is the program's exit
code; a trap prints one line on stderr and exits 134 (as wasmtime's CLI).
argv[0] given to the program is the module path exactly as given here (note:
the wasmtime CLI itself passes only the file's base name).
"""
import os
import sys


def usage(msg):
    sys.stderr.write(f"wasmtime_run.py: {msg}\n"
                     "usage: wasmtime_run.py [--dir HOST[::GUEST]]... [--env KEY[=VALUE]]... APP.wasm [ARGS...]\n")
    sys.stderr.flush()
    os._exit(2)


def main():
    argv = sys.argv[1:]
    dirs, env = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("--"):
            break
        if "=" in a and (a.startswith("--dir=") or a.startswith("--env=")):
            a, value = a.split("=", 1)
        else:
            if i + 1 >= len(argv):
                usage(f"{a} needs a value")
            i += 1
            value = argv[i]
        if a == "--dir":
            host, sep, guest = value.partition("::")
            dirs.append((host, guest if sep else host))
        elif a == "--env":
            # KEY=VALUE, or KEY alone to pass this process's value (as wasmtime's CLI and meshnode do).
            k, sep, v = value.partition("=")
            if not k:
                usage(f"--env wants KEY=VALUE, got {value!r}")
            if not sep:
                if k not in os.environ:
                    usage(f"--env {k}: not set in this environment (use KEY=VALUE)")
                v = os.environ[k]
            env.append((k, v))
        else:
            usage(f"unknown option {a}")
        i += 1
    if i >= len(argv):
        usage("missing APP.wasm")
    wasm_path = argv[i]
    args = argv[i:]

    try:
        import wasmtime
    except ImportError:
        sys.stderr.write("wasmtime_run.py: the python module `wasmtime` is not installed (pip install wasmtime)\n")
        sys.stderr.flush()
        os._exit(3)

    config = wasmtime.Config()
    engine = wasmtime.Engine(config)
    try:
        module = wasmtime.Module.from_file(engine, wasm_path)
    except Exception as e:  # missing file, not wasm, ...
        sys.stderr.write(f"wasmtime_run.py: cannot load {wasm_path}: {e}\n")
        sys.stderr.flush()
        os._exit(1)

    wasi = wasmtime.WasiConfig()
    wasi.argv = args
    wasi.env = env
    for host, guest in dirs:
        wasi.preopen_dir(host, guest)
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    code = 0
    try:
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        start(store)
    except wasmtime.ExitTrap as e:
        code = e.code
    except Exception as e:  # trap or link error
        # wasmtime's message is a backtrace followed by the cause; keep it on one line.
        msg = " | ".join(l.strip() for l in str(e).strip().splitlines() if l.strip())
        sys.stderr.write(f"wasmtime_run.py: trap: {msg or type(e).__name__}\n")
        code = 134
    sys.stderr.flush()
    # Never print on stdout from Python: the program owns fd 1.
    os._exit(code)


if __name__ == "__main__":
    main()

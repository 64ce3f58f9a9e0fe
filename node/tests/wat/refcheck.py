#!/usr/bin/env python3
"""Runs the WASI errno WAT tests under meshnode, wasmtime and Node, and shows
where the runtimes' errnos differ from what each test expects.

A development tool, not part of the test command: the committed tests
(node/tests/it/wasi_errno.rs) assert meshnode's errnos, and this script is how
those expected values were checked against the references.

    python3 node/tests/wat/refcheck.py [--meshnode target/debug/meshnode] [FILE.wat ...]

Needs the `wasmtime` PyPI package and `node` (20+) on PATH.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STR_RE = re.compile(r'\(str "((?:[^"\\]|\\.)*)"\)')
STRINGS_AT = 16384


def wat_len(lit):
    """Length in bytes of a WAT string literal's contents."""
    n, i = 0, 0
    while i < len(lit):
        if lit[i] == '\\':
            c = lit[i + 1]
            if c in 'tnr"\'\\':
                i += 2
            else:
                i += 3  # \hh
            n += 1
        else:
            n += len(lit[i].encode())
            i += 1
    return n


def expand(test_text):
    """The loader of wasi_errno.rs, in Python: prelude + test, strings placed."""
    prelude = open(os.path.join(HERE, 'prelude.wat')).read()
    text = prelude.replace(';; {{TEST}}', test_text)
    placed, data, at = {}, [], STRINGS_AT

    def sub(m):
        nonlocal at
        lit = m.group(1)
        if lit not in placed:
            placed[lit] = at
            data.append(f'(data (i32.const {at}) "{lit}")')
            at += wat_len(lit)
        return f'(i32.const {placed[lit]}) (i32.const {wat_len(lit)})'

    text = STR_RE.sub(sub, text)
    return text.replace(';; {{DATA}}', '\n  '.join(data))


NODE_RUNNER = r"""
const fs = require('fs'); const { WASI } = require('node:wasi');
const [wasm, dir] = process.argv.slice(1);
const wasi = new WASI({ version: 'preview1', args: ['t'], env: {}, preopens: { '/sandbox': dir }, returnOnExit: true });
WebAssembly.instantiate(fs.readFileSync(wasm), wasi.getImportObject()).then(({ instance }) => {
  const code = wasi.start(instance); process.exitCode = code;
});
"""


def run_wasmtime(wat, sandbox):
    import wasmtime
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, wat)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    cfg = wasmtime.WasiConfig()
    cfg.argv = ['t', 'nofaults']  # wasmtime traps on bad pointers
    cfg.preopen_dir(sandbox, '/sandbox')
    out = os.path.join(sandbox, '..', 'wasmtime.out')
    cfg.stdout_file = out
    store.set_wasi(cfg)
    inst = linker.instantiate(store, module)
    code = 0
    try:
        inst.exports(store)['_start'](store)
    except wasmtime.ExitTrap as e:
        code = e.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
        code = 'trap: ' + str(e).strip().splitlines()[-1]
    return open(out).read(), code


def run_node(wasm, sandbox):
    try:
        p = subprocess.run(['node', '--no-warnings', '-e', NODE_RUNNER, wasm, sandbox], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as e:
        return (e.stdout or b'').decode() + '\n(timed out)', 'timeout'
    return p.stdout, p.returncode


def run_meshnode(exe, wasm, sandbox):
    p = subprocess.run([exe, 'run', '--dir', f'{sandbox}::/sandbox', wasm], capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr, p.returncode


def parse(out):
    res = {}
    for line in out.splitlines():
        m = re.match(r'([^=\s]+)=(-?\d+)( MISMATCH want=(-?\d+))?', line)
        if m:
            res[m.group(1)] = (int(m.group(2)), int(m.group(4)) if m.group(4) else int(m.group(2)))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--meshnode', default=os.path.join(os.environ.get('CARGO_TARGET_DIR', 'target'), 'debug', 'meshnode'))
    ap.add_argument('files', nargs='*')
    a = ap.parse_args()
    files = a.files or sorted(os.path.join(HERE, f) for f in os.listdir(HERE) if f.startswith('errno_') and f.endswith('.wat'))
    import wasmtime
    for f in files:
        wat = expand(open(f).read())
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            wasm = os.path.join(tmp, 't.wasm')
            open(wasm, 'wb').write(wasmtime.wat2wasm(wat))
            for name in ['meshnode', 'wasmtime', 'node']:
                sb = os.path.join(tmp, name)
                os.mkdir(sb)
                if name == 'meshnode':
                    out, code = run_meshnode(a.meshnode, wasm, sb)
                elif name == 'wasmtime':
                    out, code = run_wasmtime(wat, sb)
                else:
                    out, code = run_node(wasm, sb)
                runs[name] = (parse(out), out, code)
        print(f'== {os.path.basename(f)}: exit codes ' + ', '.join(f'{n}={r[2]}' for n, r in runs.items()))
        labels = list(runs['meshnode'][0].keys())
        for n in ['wasmtime', 'node']:
            for l in runs[n][0]:
                if l not in labels:
                    labels.append(l)
        print(f'{"label":40} {"want":>5} {"mesh":>5} {"wtime":>5} {"node":>5}')
        for l in labels:
            want = next((r[0][l][1] for r in runs.values() if l in r[0]), None)
            got = [runs[n][0].get(l, (None,))[0] for n in ['meshnode', 'wasmtime', 'node']]
            if len(set(g for g in got + [want] if g is not None)) > 1:
                print(f'{l:40} {want!s:>5} ' + ' '.join(f'{g!s:>5}' for g in got))
        for n, r in runs.items():
            if 'fails=' not in r[1]:
                print(f'  {n} did not finish: ' + r[1][-500:].replace('\n', ' | '))


if __name__ == '__main__':
    main()

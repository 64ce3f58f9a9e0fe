#!/usr/bin/env node
// Reference runner: Node's built-in WASI (node:wasi, preview1), with the same
// command line as `meshnode run`:
//
//   node tests/refs/node_wasi.mjs [--dir HOST[::GUEST]]... [--env KEY[=VALUE]]... APP.wasm [ARGS...]
//
// Options come before the module; everything after it belongs to the program.
// stdin/stdout/stderr are this process's own. The exit code is the program's
// exit code; a trap prints one line on stderr and exits 134 (as wasmtime's CLI).
// argv[0] given to the program is the module path exactly as given here.
import { readFileSync } from 'node:fs';
import process from 'node:process';

// node:wasi prints an ExperimentalWarning on stderr; the program owns stderr,
// so silence exactly that warning before loading the module.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0] && rest[0].type;
  if (type === 'ExperimentalWarning' && String(warning).includes('WASI')) return;
  return emitWarning.call(process, warning, ...rest);
};
const { WASI } = await import('node:wasi');

function usage(msg) {
  process.stderr.write(`node_wasi.mjs: ${msg}\n` +
    'usage: node_wasi.mjs [--dir HOST[::GUEST]]... [--env KEY[=VALUE]]... APP.wasm [ARGS...]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
const preopens = {};
const env = {};
let i = 0;
for (; i < argv.length; i++) {
  let a = argv[i];
  if (a === '--') { i++; break; }
  if (!a.startsWith('--')) break;
  let value;
  const eq = a.indexOf('=');
  if (eq > 0 && (a.startsWith('--dir=') || a.startsWith('--env='))) {
    value = a.slice(eq + 1);
    a = a.slice(0, eq);
  } else {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    value = argv[++i];
  }
  if (a === '--dir') {
    const sep = value.indexOf('::');
    const host = sep >= 0 ? value.slice(0, sep) : value;
    const guest = sep >= 0 ? value.slice(sep + 2) : value;
    preopens[guest] = host;
  } else if (a === '--env') {
    // KEY=VALUE, or KEY alone to pass this process's value (as wasmtime and meshnode do).
    const e = value.indexOf('=');
    if (e === 0 || value === '') usage(`--env wants KEY=VALUE, got ${JSON.stringify(value)}`);
    if (e > 0) env[value.slice(0, e)] = value.slice(e + 1);
    else if (process.env[value] !== undefined) env[value] = process.env[value];
    else usage(`--env ${value}: not set in this environment (use KEY=VALUE)`);
  } else {
    usage(`unknown option ${a}`);
  }
}
if (i >= argv.length) usage('missing APP.wasm');
const wasmPath = argv[i];
const args = argv.slice(i); // argv[0] = module path as given

let bytes;
try {
  bytes = readFileSync(wasmPath);
} catch (e) {
  process.stderr.write(`node_wasi.mjs: cannot read ${wasmPath}: ${e.message}\n`);
  process.exit(1);
}

const wasi = new WASI({ version: 'preview1', args, env, preopens, returnOnExit: true });
let code;
try {
  const module = await WebAssembly.compile(bytes);
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  code = wasi.start(instance);
} catch (e) {
  process.stderr.write(`node_wasi.mjs: trap: ${e && e.message ? e.message : e}\n`);
  process.exit(134);
}
process.exit(code ?? 0);

//! meshnode's integration tests, in one binary (every extra test binary costs
//! a link on CI).

mod cli_errors;
mod sandbox;
mod wasi_errno;

mod dock;
mod support;
mod mesh;
mod snapshot;
mod corpus;
mod migrate;
mod cross_cpu;

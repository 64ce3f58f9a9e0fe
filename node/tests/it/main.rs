//! meshnode's integration tests, in one binary (every extra test binary costs
//! a link on CI).

mod dock;
mod support;

//! testnet: many real meshnode processes on one machine over an emulated
//! WAN. Each node runs in its own network namespace with a TUN device; a
//! router thread in this process carries every packet between the TUN
//! devices through per-link delay queues with jitter, loss and a bandwidth
//! limit, drawn from seeded streams. docs/testnet.md has the whole story.
//!
//! The modules, each using only those listed before it (no import
//! circle):
//! - [`record`]: what a run records (progress, samples, marks).
//! - [`traffic`]: per-node traffic counts, snapshots and rates.
//! - [`rng`]: the seeded streams; [`netns`]: namespaces and TUN devices
//!   (raw syscalls); [`outcome`]: how a run ends, and its exit code.
//! - [`fields`]: reading a scenario's values, with errors naming the field.
//! - [`view`]: what checks and clients see of a running testnet (a trait).
//! - [`checks`]: one file per assertion kind (its fields, how it is judged,
//!   its report line); [`clients`]: one file per load client kind.
//! - [`scenario`]: the scenario file and its limits.
//! - [`link`]: the per-link model (pure, tested without a clock);
//!   [`nodes`]: meshnode processes and CLI calls inside namespaces.
//! - [`router`]: the forwarding thread.
//! - [`ctx`]: what a run's threads share (the [`view::View`] of a run).
//! - [`report`]: report.md, timeline.svg, samples.csv, and the plan.
//! - [`run`]: tools and builds, setup, the timeline, vessels, assertions.

pub mod checks;
pub mod clients;
pub mod ctx;
pub mod fields;
pub mod link;
pub mod netns;
pub mod nodes;
pub mod outcome;
pub mod record;
pub mod report;
pub mod rng;
pub mod router;
pub mod run;
pub mod scenario;
pub mod traffic;
pub mod view;

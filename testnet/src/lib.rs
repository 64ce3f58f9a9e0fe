//! testnet: many real meshnode processes on one machine over an emulated
//! WAN. Each node runs in its own network namespace with a TUN device; a
//! router thread in this process carries every packet between the TUN
//! devices through per-link delay queues with jitter, loss and a bandwidth
//! limit, drawn from seeded streams. docs/testnet.md has the whole story.
//!
//! - [`scenario`]: the scenario file and its limits.
//! - [`rng`], [`link`]: the seeded per-link model (pure, tested without a clock).
//! - [`netns`]: namespaces and TUN devices (raw syscalls).
//! - [`router`]: the forwarding thread.
//! - [`nodes`]: meshnode processes and CLI calls inside namespaces.
//! - [`run`]: the timeline, clients and assertions; [`report`]: the outputs.

pub mod link;
pub mod netns;
pub mod nodes;
pub mod record;
pub mod report;
pub mod rng;
pub mod router;
pub mod run;
pub mod scenario;

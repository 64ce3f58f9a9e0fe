//! meshnode's integration tests, in one binary (every extra test binary costs
//! a link on CI).

mod cli_errors;
mod sandbox;
mod services;
mod wasi_errno;

mod cli_ops;
mod cli_vessels;
mod corpus;
mod cross_cpu;
mod dashboard;
mod dead_node;
mod dock;
mod drain_dead;
mod durability;
mod hardening_limits;
mod hardening_member;
mod hardening_peer;
mod hardening_wasi;
mod leases;
mod log_generations;
mod mesh;
mod mesh_refusals;
mod mesh_services;
mod mesh_vessels;
mod metrics;
mod migrate;
mod names;
mod placement;
mod recover_force;
mod replicas;
mod snapshot;
mod status;
mod support;
mod swim;
mod sync_durability;
mod systemd_notify;
mod upgrade;
mod waiting;
mod wasi_rights;

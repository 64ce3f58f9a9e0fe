//! This node's status, as gossiped to the mesh: CPU architecture, OS, memory,
//! load and vessels. Read from `/proc` on Linux; fields that a platform does
//! not give are `None`.

use protocol::control::{NodeStatus, CONTROL_VERSION};

/// Samples this machine's status now.
pub fn sample(vessels: Vec<String>) -> NodeStatus {
    let (free, total) = memory_bytes();
    NodeStatus {
        version: CONTROL_VERSION,
        arch: std::env::consts::ARCH.to_string(),
        os: std::env::consts::OS.to_string(),
        free_memory_bytes: free,
        total_memory_bytes: total,
        load_milli: load_milli(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        vessels,
        rtts: Vec::new(),
        draining: false,
        services: Vec::new(),
        named: Vec::new(),
        name: None,
        software: Some(protocol::control::NodeSoftware {
            version: crate::upgrade::running_version().to_string(),
            peer_protocol: crate::upgrade::marker().peer_protocol,
            min_peer_protocol: crate::upgrade::marker().min_peer_protocol,
        }),
        coordinate: None,
        refresh_intervals: Some(protocol::control::STATUS_REFRESH_INTERVALS),
    }
}

/// The one-minute load average per CPU, where the platform gives it.
pub fn load_per_cpu() -> Option<f64> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    load_milli().map(|l| l as f64 / 1000.0 / cpus as f64)
}

/// `MemAvailable` and `MemTotal` from /proc/meminfo.
fn memory_bytes() -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return (None, None);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    (field("MemAvailable:"), field("MemTotal:"))
}

/// The one-minute load average × 1000, from /proc/loadavg.
fn load_milli() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let first: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((first * 1000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_names_this_machine() {
        let s = super::sample(vec!["v1".into()]);
        s.check().unwrap();
        assert_eq!(s.arch, std::env::consts::ARCH);
        if cfg!(target_os = "linux") {
            assert!(s.free_memory_bytes.unwrap() > 0);
            assert!(s.total_memory_bytes.unwrap() >= s.free_memory_bytes.unwrap());
            assert!(s.load_milli.is_some());
        }
    }
}

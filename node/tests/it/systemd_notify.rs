//! The node under systemd's notify protocol (`Type=notify` in
//! packaging/deb/meshnode.service): a real node process, a real datagram
//! socket standing in for systemd's. It says READY=1 once up, pings the
//! watchdog at half the interval systemd set, and says STOPPING=1 on
//! SIGTERM before it writes its vessels down.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::mesh::{sigterm, Node, User};

/// The watchdog interval given to the node: pings are due every 150 ms.
const WATCHDOG_USEC: &str = "300000";

/// Everything the node sent to the notify socket within `within`, until
/// `until` says to stop.
fn receive(
    socket: &UnixDatagram,
    node: &Node,
    within: Duration,
    until: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !until(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the node sent only {got:?} within {within:?}\n{}",
            node.log()
        );
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    got
}

#[test]
fn a_node_under_systemd_says_ready_pings_the_watchdog_and_says_stopping() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let path = user.home.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let dir = user.home.path().join("a");
    let sock = path.to_str().unwrap();
    let envs = [
        ("NOTIFY_SOCKET", sock),
        ("WATCHDOG_USEC", WATCHDOG_USEC),
        ("RUST_LOG", "info,meshnode::daemon::systemd=debug"),
    ];
    let mut node = user.start_env(&dir, &[], &[], &envs);

    let wait = Duration::from_secs(30);
    node.wait_ready();
    let got = receive(&socket, &node, wait, |g| g.iter().any(|l| l == "READY=1"));
    assert!(
        got.iter().all(|l| l != "WATCHDOG=1"),
        "a ping before ready: {got:?}"
    );
    // Pings at half the interval: at least four in a second, from the loop.
    let t = Instant::now();
    let pings = |g: &[String]| g.iter().filter(|l| *l == "WATCHDOG=1").count();
    let got = receive(&socket, &node, wait, |g| pings(g) >= 4);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "four pings took {took:?}: {got:?}"
    );
    node.wait_ready();

    sigterm(&node.child);
    let got = receive(&socket, &node, wait, |g| {
        g.iter().any(|l| l == "STOPPING=1")
    });
    assert!(got.iter().any(|l| l == "STOPPING=1"), "{got:?}");
    let status = node.child.wait().unwrap();
    assert!(
        status.success(),
        "the node exits 0 after SIGTERM: {status:?}"
    );
}

#[test]
fn a_node_outside_systemd_sends_nothing_and_runs() {
    // No NOTIFY_SOCKET: the same node runs as before (every other test
    // starts nodes this way); this checks a WATCHDOG_USEC alone is ignored.
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let dir = user.home.path().join("a");
    let mut node = user.start_env(&dir, &[], &[], &[("WATCHDOG_USEC", WATCHDOG_USEC)]);
    node.wait_ready();
    sigterm(&node.child);
    assert!(node.child.wait().unwrap().success());
}

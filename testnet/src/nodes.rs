//! The meshnode processes: one `meshnode start` per node, inside its
//! namespace, and short CLI commands (`peers --json`, `ps --json`, `deploy`,
//! `migrate`) run inside a node's namespace against that node, as its user.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use crate::scenario::{Arch, Discovery, Scenario};

/// The binaries a run needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The native meshnode (every CLI command uses it).
    pub meshnode: PathBuf,
    /// For each foreign CPU a node runs on: its qemu-user and its meshnode.
    pub foreign: Vec<(Arch, PathBuf, PathBuf)>,
    /// The frozen older build, when a node starts on it
    /// (`MESHNODE_FROZEN_BIN`, scripts/build-frozen.sh).
    pub frozen: Option<PathBuf>,
    /// `--version` of `meshnode`, and of `frozen` when there is one.
    pub versions: (String, Option<String>),
}

impl Binaries {
    /// The qemu and the meshnode of `arch`, when a node needs them.
    pub fn of(&self, arch: Arch) -> Option<(&Path, &Path)> {
        self.foreign
            .iter()
            .find(|(a, _, _)| *a == arch)
            .map(|(_, q, b)| (q.as_path(), b.as_path()))
    }
}

/// One node: what never changes during a run, plus its liveness.
pub struct NodeRt {
    pub name: String,
    pub index: usize,
    pub addr: Ipv4Addr,
    pub arch: Arch,
    /// It starts on the frozen older build (`build = "frozen"`).
    pub frozen: bool,
    pub ns: NetNs,
    /// out/nodes/NAME
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub home: PathBuf,
    pub log: PathBuf,
    pub peer_id: OnceLock<String>,
    /// Its QUIC address with /p2p/ID, once it has started.
    pub quic: Mutex<Option<String>>,
    /// A `meshnode start` process is running (not killed, has not exited).
    pub up: AtomicBool,
    /// Extra environment of its `meshnode start` (the scenario's `env`; a
    /// `restart` with `env` replaces it).
    pub env: Mutex<Vec<(String, String)>>,
}

impl NodeRt {
    pub fn new(
        name: &str,
        index: usize,
        (arch, frozen): (Arch, bool),
        env: Vec<(String, String)>,
        ns: NetNs,
        out: &Path,
    ) -> std::io::Result<NodeRt> {
        let dir = out.join("nodes").join(name);
        let data_dir = dir.join("data");
        let home = dir.join("home");
        std::fs::create_dir_all(&data_dir)?;
        std::fs::create_dir_all(home.join(".config"))?;
        std::fs::create_dir_all(home.join(".local/share"))?;
        Ok(NodeRt {
            name: name.to_string(),
            index,
            addr: Scenario::addr(index),
            arch,
            frozen,
            ns,
            log: dir.join("node.log"),
            dir,
            data_dir,
            home,
            peer_id: OnceLock::new(),
            quic: Mutex::new(None),
            up: AtomicBool::new(false),
            env: Mutex::new(env),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// What it runs, for the log and the report: "native", "native, frozen
    /// build" or "aarch64 under qemu".
    pub fn build_words(&self) -> String {
        match (self.arch, self.frozen) {
            (Arch::Native, false) => "native".into(),
            (Arch::Native, true) => "native, frozen build".into(),
            (a, _) => format!("{} under qemu", a.name()),
        }
    }

    fn env(&self, c: &mut Command) {
        c.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env_remove("MESHNODE_USER_KEY")
            .stdin(Stdio::null());
    }

    /// The node's `--name`: its scenario name, made a valid node name (`_`
    /// becomes `-`; scenario names are otherwise lowercase letters, digits
    /// and `-` already). Without it every node would default to the
    /// hostname, which is the same in every namespace, and the names would
    /// clash (each would name no node).
    pub fn node_name(&self) -> String {
        node_name_of(&self.name, self.index)
    }

    /// `meshnode start` for this node (spawn it from the main thread: the
    /// child dies with the thread that spawned it).
    pub fn start(
        &self,
        sc: &Scenario,
        bins: &Binaries,
        user_key: &Path,
        peers: &[String],
    ) -> std::io::Result<Child> {
        let mut c = match (self.arch.foreign(), bins.of(self.arch)) {
            (Some(f), Some((qemu, bin))) => {
                let mut c = self.ns.command(qemu, true);
                c.args(f.qemu_args).arg(bin);
                c
            }
            (Some(f), None) => {
                return Err(std::io::Error::other(format!(
                    "no {} meshnode ({})",
                    self.arch.name(),
                    f.bin_env
                )))
            }
            (None, _) if self.frozen => match &bins.frozen {
                Some(frozen) => self.ns.command(frozen, true),
                None => {
                    return Err(std::io::Error::other(
                        "no frozen meshnode (MESHNODE_FROZEN_BIN)",
                    ))
                }
            },
            (None, _) => self.ns.command(&bins.meshnode, true),
        };
        self.env(&mut c);
        let a = self.addr;
        c.env(
            "RUST_LOG",
            std::env::var("TESTNET_NODE_LOG").unwrap_or_else(|_| "info".into()),
        )
        // A fault injection comes from the scenario only, never from the
        // environment testnet itself runs in.
        .env_remove("MESHNODE_FAULT")
        .envs(self.env.lock().unwrap().iter().map(|(k, v)| (k, v)))
        .arg("start")
        .args(["--name", &self.node_name()])
        .arg("--data-dir")
        .arg(&self.data_dir)
        .arg("--user-key")
        .arg(user_key)
        .args(["--listen", &format!("/ip4/{a}/tcp/7646")])
        .args(["--listen", &format!("/ip4/{a}/udp/7646/quic-v1")])
        .args([
            "--ping-interval",
            &format!("{}ms", sc.ping_interval.as_millis()),
        ])
        .args([
            "--status-interval",
            &format!("{}ms", sc.status_interval.as_millis()),
        ]);
        if sc.discovery == Discovery::Peer {
            c.arg("--no-mdns");
        }
        for p in peers {
            c.args(["--peer", p]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        c.stdout(Stdio::null()).stderr(log);
        // The address file of the last run would look like readiness.
        let _ = std::fs::remove_file(self.data_dir.join("node.addrs"));
        c.spawn()
    }

    /// The node's QUIC address once its address file lists TCP and QUIC.
    pub fn ready_addr(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data_dir.join("node.addrs")).ok()?;
        let has_tcp = text.lines().any(|l| l.contains("/tcp/"));
        let quic = text
            .lines()
            .find(|l| l.contains("/quic-v1/") && l.contains("/p2p/"))?;
        has_tcp.then(|| quic.trim().to_string())
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs `meshnode SUB [target options] REST...` in this node's namespace
    /// against this node; returns stdout, or stderr as the error. SUB may
    /// be two words (`upgrade roll`): the target options are the leaf's.
    pub fn cli(
        &self,
        bins: &Binaries,
        user_key: &Path,
        sub: &str,
        rest: &[&str],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let mut c = self.ns.command(&bins.meshnode, false);
        self.env(&mut c);
        c.env("RUST_LOG", "warn")
            .args(sub.split_whitespace())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--user-key")
            .arg(user_key)
            .args(["--timeout", &format!("{}s", timeout.as_secs().max(1))])
            .args(rest);
        let out = output_within(c, timeout + Duration::from_secs(5))
            .map_err(|e| format!("meshnode {sub} on {}: {e}", self.name))?;
        if out.0 {
            Ok(out.1)
        } else {
            let err = String::from_utf8_lossy(&out.2).trim().to_string();
            Err(format!("meshnode {sub} on {}: {err}", self.name))
        }
    }

    /// `peers --json` as parsed JSON rows.
    pub fn peers(
        &self,
        bins: &Binaries,
        user_key: &Path,
    ) -> Result<Vec<serde_json::Value>, String> {
        let out = self.cli(
            bins,
            user_key,
            "peers",
            &["--json"],
            Duration::from_secs(10),
        )?;
        let v: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| format!("peers --json on {}: {e}", self.name))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

/// What `BIN --version` says after "meshnode " (the release marker's
/// version).
pub fn version_of(bin: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} --version: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| format!("{} --version printed {:?}", bin.display(), text.trim()))
}

/// Runs a command to its end or until `limit`, when it is killed; returns
/// (success, stdout, stderr).
pub fn output_within(mut c: Command, limit: Duration) -> std::io::Result<(bool, Vec<u8>, Vec<u8>)> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn()?;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ro = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let re = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = ro.join().unwrap_or_default();
    let mut err = re.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), out, err)),
        None => {
            err.extend_from_slice(format!("(killed after {limit:?})").as_bytes());
            Ok((false, out, err))
        }
    }
}

/// [`NodeRt::node_name`] of the scenario's node `name`, the `index`th:
/// `node-INDEX` when the name cannot be a node name (over 24 bytes).
pub fn node_name_of(name: &str, index: usize) -> String {
    let name = name.replace('_', "-");
    let name = name.trim_matches('-');
    if protocol::control::check_node_name(name).is_ok() {
        name.to_string()
    } else {
        format!("node-{index}")
    }
}

#[cfg(test)]
mod node_name_tests {
    use super::node_name_of;

    #[test]
    fn scenario_names_become_distinct_node_names() {
        assert_eq!(node_name_of("a", 0), "a");
        assert_eq!(node_name_of("pi_1", 1), "pi-1");
        assert_eq!(node_name_of(&"x".repeat(30), 7), "node-7");
        let names: Vec<String> = ["a", "b", "edge-2"]
            .iter()
            .enumerate()
            .map(|(i, n)| node_name_of(n, i))
            .collect();
        assert_eq!(names, ["a", "b", "edge-2"]);
    }
}

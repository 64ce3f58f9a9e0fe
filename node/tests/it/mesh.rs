//! Mesh tests: real `meshnode start` processes on 127.0.0.1 with explicit
//! peers, each with its own data directory, and a temporary HOME (and XDG
//! dirs) per user, so that the real ~ is never touched. The CLI is the real
//! binary too. mDNS is off (it never sees loopback anyway).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous for a loaded 2-core CI machine; every wait polls, so a healthy
/// run finishes in a few seconds.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const POLL: Duration = Duration::from_millis(200);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_meshnode"))
}

/// One user: a temporary HOME with its own config and data directories.
pub(crate) struct User {
    pub(crate) home: tempfile::TempDir,
}

impl User {
    pub(crate) fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        let h = self.home.path();
        c.env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join(".config"))
            .env("XDG_DATA_HOME", h.join(".local/share"))
            .env_remove("MESHNODE_USER_KEY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn user_key_file(&self) -> PathBuf {
        self.home.path().join(".config/meshnode/user.key")
    }

    /// Runs a CLI command and returns its output.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub(crate) fn start(&self, name: &str, peers: &[String], extra: &[&str]) -> Node {
        let data_dir = self.home.path().join(name);
        std::fs::create_dir_all(&data_dir).unwrap();
        self.start_in(&data_dir, peers, extra)
    }

    pub(crate) fn start_in(&self, data_dir: &Path, peers: &[String], extra: &[&str]) -> Node {
        self.start_env(data_dir, peers, extra, &[])
    }

    /// Starts a node with extra environment variables (test pacing, fault
    /// injection). Its log is appended to, so a restart keeps the history.
    pub(crate) fn start_env(
        &self,
        data_dir: &Path,
        peers: &[String],
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Node {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.with_extension("log");
        let mut c = self.cmd();
        for (k, v) in envs {
            c.env(k, v);
        }
        c.arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
                "--no-mdns",
            ])
            .args(["--status-interval", "500ms"]);
        for p in peers {
            c.args(["--peer", p]);
        }
        c.args(extra).stdout(Stdio::null()).stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        );
        let child = c.spawn().unwrap();
        Node {
            child,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }
}

/// A running node; killed when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the node's address file; returns its QUIC address with
    /// `/p2p/ID`.
    pub(crate) fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "node {} exited with {status} before it was ready:\n{}",
                    self.data_dir.display(),
                    self.log()
                );
            }
            if let Ok(text) = std::fs::read_to_string(self.data_dir.join("node.addrs")) {
                let addrs: Vec<&str> = text.lines().collect();
                let has_tcp = addrs.iter().any(|a| a.contains("/tcp/"));
                if let Some(q) = addrs.iter().find(|a| a.contains("/quic-v1/")) {
                    if has_tcp {
                        return q.to_string();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready in {TIMEOUT:?}:\n{}",
                self.data_dir.display(),
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    pub(crate) fn peer_id(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir.join("node.addrs")).unwrap();
        text.lines()
            .next()
            .unwrap()
            .rsplit("/p2p/")
            .next()
            .unwrap()
            .to_string()
    }

    pub(crate) fn dir(&self) -> &str {
        self.data_dir.to_str().unwrap()
    }

    /// Waits for the process to exit by itself; returns its exit code and log.
    pub(crate) fn wait_exit(&mut self) -> (i32, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not exit in {TIMEOUT:?}:\n{}",
                self.data_dir.display(),
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }
}

/// `meshnode peers --json [--all]` against `node`, as `user`.
pub(crate) fn peers(user: &User, node: &Node, all: bool) -> Result<Vec<Value>, String> {
    let mut args = vec!["peers", "--json", "--data-dir", node.dir()];
    if all {
        args.push("--all");
    }
    let out = user.run(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Polls `cond` on `node`'s member peers until it holds.
pub(crate) fn wait_for_peers(
    user: &User,
    node: &Node,
    what: &str,
    cond: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = peers(user, node, false);
        if let Ok(p) = &last {
            if cond(p) {
                return p.clone();
            }
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "{what}: not true within {TIMEOUT:?}; last `peers`: {last:?}\nnode log:\n{}",
        node.log()
    );
}

pub(crate) fn complete(p: &Value, peer_id: &str) -> bool {
    p["peer_id"] == peer_id
        && p["member"] == true
        && p["rtt_ms"].as_f64().is_some_and(|r| r > 0.0)
        && p["arch"] == std::env::consts::ARCH
        && p["os"] == std::env::consts::OS
        && !p["addresses"].as_array().unwrap().is_empty()
}

pub(crate) fn sees_all(peers: &[Value], ids: &[&str]) -> bool {
    ids.iter().all(|id| peers.iter().any(|p| complete(p, id)))
}

/// Sends SIGTERM (through the shell's built-in `kill`, which every system
/// has).
pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn three_nodes_see_each_other_and_a_second_start_is_refused() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut a = user.start("a", &[], &[]);
    let a_addr = a.wait_ready();
    let mut b = user.start("b", std::slice::from_ref(&a_addr), &[]);
    let b_addr = b.wait_ready();
    let mut c = user.start("c", &[a_addr.clone(), b_addr.clone()], &[]);
    c.wait_ready();
    let ids = [a.peer_id(), b.peer_id(), c.peer_id()];

    for (node, me) in [(&a, 0), (&b, 1), (&c, 2)] {
        let others: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, s)| s.as_str())
            .collect();
        let list = wait_for_peers(
            &user,
            node,
            "every node sees the others with RTT, arch and OS",
            |p| sees_all(p, &others),
        );
        // The two others, and the node itself, first and marked.
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(
            (&list[0]["peer_id"], &list[0]["self"]),
            (&Value::from(ids[me].as_str()), &Value::from(true)),
            "{list:?}"
        );
    }

    // Each node learns a network coordinate from its pings and gossips it
    // in its status: A estimates its RTT to the others from theirs (issue
    // 19), once both coordinates have settled.
    wait_for_peers(&user, &a, "A estimates its RTT to B and C", |p| {
        ids[1..].iter().all(|id| {
            p.iter().any(|q| {
                q["peer_id"] == id.as_str()
                    && q["estimated_rtt_ms"].as_f64().is_some_and(|r| r > 0.0)
            })
        })
    });

    // The first start created the user key (0600) and the node's config.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(user.user_key_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(a.data_dir.join("config.toml").exists());

    // The table form lists both peers too (wide: with whole PeerIds).
    let out = user.run(&["peers", "-o", "wide", "--data-dir", a.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&ids[1]) && table.contains(&ids[2]),
        "{table}"
    );

    // Kademlia: a fourth node that knows only A finds B and C through it.
    let mut d = user.start("d", std::slice::from_ref(&a_addr), &[]);
    d.wait_ready();
    wait_for_peers(&user, &d, "D finds every node through A's Kademlia", |p| {
        sees_all(p, &ids.iter().map(String::as_str).collect::<Vec<_>>())
    });

    // SIGTERM stops a node cleanly: exit 0, address file removed.
    sigterm(&d.child);
    let (code, log) = d.wait_exit();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!d.data_dir.join("node.addrs").exists());

    // A second node on the same data directory is refused, clearly.
    let mut again = user.start_in(&a.data_dir.clone(), &[], &[]);
    let (code, log) = again.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("another meshnode is already running with data directory"),
        "{log}"
    );
    // … and the first one still answers.
    assert!(peers(&user, &a, false).is_ok());
}

#[test]
fn membership_non_members_invites_and_refusals() {
    let _cpu = crate::support::shared_cpu();
    let alice = User::new();
    let mallory = User::new();
    let newcomer = User::new(); // a device without any user key

    let mut a = alice.start("a", &[], &[]);
    let a_addr = a.wait_ready();
    // Mallory's node enrols with her own key, which A does not trust.
    let mut x = mallory.start("x", std::slice::from_ref(&a_addr), &[]);
    x.wait_ready();
    let x_id = x.peer_id();

    // Mallory cannot command A.
    let out = mallory.run(&["peers", "--json", "--node", &a_addr]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not trusted by this node"),
        "{}",
        stderr(&out)
    );

    // A invites a new device, which joins with the token.
    let out = alice.run(&["invite", "--data-dir", a.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("mnjoin1"), "{token}");
    let mut b = newcomer.start("b", &[], &["--join", &token]);
    b.wait_ready();
    let b_id = b.peer_id();
    let a_id = a.peer_id();
    wait_for_peers(&alice, &a, "A lists the invited node", |p| {
        sees_all(p, &[&b_id])
    });
    // B trusts Alice now (it adopted A's trust list), so Alice can command it.
    wait_for_peers(&alice, &b, "B lists A", |p| sees_all(p, &[&a_id]));
    assert!(
        !newcomer.user_key_file().exists(),
        "joining must not create a user key"
    );
    assert!(b.log().contains("joined the mesh"), "{}", b.log());

    // Restarted without the token or any --peer, B finds A again (it
    // remembers its member peers) and is still a member.
    let b_dir = b.data_dir.clone();
    sigterm(&b.child);
    assert_eq!(b.wait_exit().0, 0);
    drop(b);
    let mut b = newcomer.start_in(&b_dir, &[], &[]);
    b.wait_ready();
    wait_for_peers(&alice, &b, "restarted B finds A", |p| sees_all(p, &[&a_id]));
    wait_for_peers(&alice, &a, "A lists restarted B", |p| sees_all(p, &[&b_id]));
    assert!(
        !newcomer.user_key_file().exists(),
        "a restart must not create a user key"
    );

    // The non-member is connected but not listed as a member; --all shows why.
    let members = peers(&alice, &a, false).unwrap();
    assert!(
        members.iter().all(|p| p["peer_id"] != x_id.as_str()),
        "{members:?}"
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let all = peers(&alice, &a, true).unwrap();
        // (Listed with no verdict until its certificate arrives.)
        if let Some(p) = all
            .iter()
            .find(|p| p["peer_id"] == x_id.as_str() && !p["refused"].is_null())
        {
            assert_eq!(p["member"], false);
            assert!(
                p["refused"]
                    .as_str()
                    .unwrap()
                    .contains("is not trusted by this node"),
                "{p}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never listed X with --all: {all:?}"
        );
        std::thread::sleep(POLL);
    }
    assert!(
        a.log().contains("refused peer as a non-member"),
        "{}",
        a.log()
    );

    // Replaying the used token is refused, with a clear error.
    let mut c = newcomer.start("c", &[], &["--join", &token]);
    let (code, log) = c.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("join refused by the inviting node: token-used: join token already used"),
        "{log}"
    );

    // An expired token is refused.
    let out = alice.run(&["invite", "--ttl", "1s", "--data-dir", a.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let short = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let mut d = newcomer.start("d", &[], &["--join", &short]);
    let (code, log) = d.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("join token expired"), "{log}");

    // A forged certificate (claims Alice's key, signed by another key) is
    // refused at start.
    let forged_dir = newcomer.home.path().join("forged");
    std::fs::create_dir_all(&forged_dir).unwrap();
    let node_secret = [7u8; 32];
    std::fs::write(
        forged_dir.join("node.key"),
        format!("{}\n", hex(&node_secret)),
    )
    .unwrap();
    // Its owner's alone, or the node refuses it before the certificate.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(forged_dir.join("node.key"), mode).unwrap();
    let node_pub = ed25519_dalek::SigningKey::from_bytes(&node_secret)
        .verifying_key()
        .to_bytes();
    let alice_pub = user_public_key(&alice.user_key_file());
    let forger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let mut cert = protocol::membership::MemberCertificate::self_enrol(
        &forger,
        protocol::membership::PublicKey(node_pub),
    );
    cert.body.user_key = protocol::membership::PublicKey(alice_pub);
    std::fs::write(
        forged_dir.join("certificate.cbor"),
        protocol::cbor::encode(&cert),
    )
    .unwrap();
    let mut f = newcomer.start_in(&forged_dir, std::slice::from_ref(&a_addr), &[]);
    let (code, log) = f.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("forged or corrupt member certificate"),
        "{log}"
    );

    // Over the network: a peer that presents a forged certificate (an
    // in-process node, which skips the start-time check) is refused by A.
    let forged_node = InProcessNode::start(&forged_dir, [7u8; 32], cert, &a_addr);
    let forged_id = forged_node.peer_id.clone();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let all = peers(&alice, &a, true).unwrap();
        if let Some(p) = all
            .iter()
            .find(|p| p["peer_id"] == forged_id.as_str() && !p["refused"].is_null())
        {
            assert_eq!(p["member"], false, "{p}");
            let reason = p["refused"].as_str().unwrap_or_default();
            assert!(
                reason.contains("forged or corrupt member certificate"),
                "{p}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never listed the forged peer: {all:?}\n{}",
            a.log()
        );
        std::thread::sleep(POLL);
    }
    // The forged node itself (which trusts Alice's key) sees A as a member
    // and measures RTT to it: refusal is one-sided, by the honest node.
    let deadline = Instant::now() + TIMEOUT;
    while !forged_node
        .peers()
        .iter()
        .any(|p| p.peer_id == a_id && p.member && p.rtt_us.is_some())
    {
        assert!(
            Instant::now() < deadline,
            "the in-process node never saw A: {:?}",
            forged_node.peers()
        );
        std::thread::sleep(POLL);
    }
    drop(forged_node);

    // Trust management: list, add Mallory (X becomes a member), remove.
    let out = alice.run(&["trust", "list", "--json", "--data-dir", a.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list, vec![hex(&user_public_key(&alice.user_key_file()))]);
    let mallory_key = hex(&user_public_key(&mallory.user_key_file()));
    let out = alice.run(&["trust", "add", &mallory_key, "--data-dir", a.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_peers(&alice, &a, "X is a member once Mallory is trusted", |p| {
        p.iter().any(|p| p["peer_id"] == x_id.as_str())
    });
    let out = alice.run(&["trust", "remove", &mallory_key, "--data-dir", a.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_peers(
        &alice,
        &a,
        "X is no member once Mallory is not trusted",
        |p| p.iter().all(|p| p["peer_id"] != x_id.as_str()),
    );
}

/// A node run inside the test process through the library, for what the
/// binary refuses to start with (a forged certificate). Real libp2p, real
/// sockets; stopped when dropped.
pub(crate) struct InProcessNode {
    pub(crate) peer_id: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) commands: tokio::sync::mpsc::Sender<meshnode::mesh::link::NodeCommand>,
}

impl InProcessNode {
    pub(crate) fn start(
        dir: &Path,
        secret: [u8; 32],
        cert: protocol::membership::MemberCertificate,
        peer: &str,
    ) -> InProcessNode {
        use meshnode::daemon::config::Config;
        let identity = meshnode::identity::NodeIdentity::from_signing_key(
            ed25519_dalek::SigningKey::from_bytes(&secret),
        );
        let peer_id = identity.peer_id.to_string();
        let config = Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            peers: vec![peer.to_string()],
            mdns: false,
            status_interval_ms: 500,
            ..Config::default()
        };
        let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(8);
        let params = meshnode::mesh::node::NodeParams {
            identity,
            data_dir: meshnode::daemon::datadir::DataDir::open(Some(dir)).unwrap(),
            config,
            trusted: vec![cert.body.user_key],
            certificate: Some(cert),
            join: None,
            commands: Some(cmd_rx),
            host: std::sync::Arc::new(std::sync::Mutex::new(
                meshnode::vessel::Host::open(
                    dir,
                    peer_id.clone(),
                    Default::default(),
                    Default::default(),
                )
                .unwrap(),
            )),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let _ = meshnode::mesh::node::run(params, async move {
                    let _ = rx.await;
                })
                .await;
            });
        });
        InProcessNode {
            peer_id,
            stop: Some(tx),
            thread: Some(thread),
            commands: cmd_tx,
        }
    }

    /// The node's peer table, through its command channel.
    pub(crate) fn peers(&self) -> Vec<protocol::control::PeerInfo> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands
            .blocking_send(meshnode::mesh::link::NodeCommand::Peers(tx))
            .unwrap();
        rx.blocking_recv().unwrap()
    }
}

impl Drop for InProcessNode {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn user_public_key(path: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(path).unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&text.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    ed25519_dalek::SigningKey::from_bytes(&bytes.try_into().unwrap())
        .verifying_key()
        .to_bytes()
}

#[test]
fn control_requests_are_bound_to_a_nonce_a_connection_and_a_node() {
    let _cpu = crate::support::shared_cpu();
    use meshnode::control::client::Session;
    use protocol::control::{Command, ControlRequest, ControlResponse};
    use protocol::refusal::RefusalCode;

    let user = User::new();
    let mut a = user.start("a", &[], &[]);
    let a_addr: libp2p::Multiaddr = a.wait_ready().parse().unwrap();
    let mut b = user.start("b", &[], &[]);
    let b_addr: libp2p::Multiaddr = b.wait_ready().parse().unwrap();
    let key_hex = std::fs::read_to_string(user.user_key_file()).unwrap();
    let secret: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&key_hex.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    let refusal =
        |r: Result<ControlResponse, meshnode::control::client::ClientError>| match r.unwrap() {
            ControlResponse::Refused(refusal) => refusal,
            other => panic!("expected a refusal, got {other:?}"),
        };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s1 = Session::connect(std::slice::from_ref(&a_addr))
            .await
            .unwrap();
        let req = s1.sign(&key, Command::TrustList).await.unwrap();
        let ok = s1
            .request(ControlRequest::Signed(Box::new(req.clone())))
            .await
            .unwrap();
        assert!(
            matches!(ok, ControlResponse::Trust(ref k) if k.len() == 1),
            "{ok:?}"
        );

        // The same request again: its nonce is spent.
        let reason = refusal(
            s1.request(ControlRequest::Signed(Box::new(req.clone())))
                .await,
        );
        assert_eq!(reason.code, RefusalCode::Replayed, "{reason}");
        assert!(
            reason.detail.starts_with("unknown or already used nonce"),
            "{reason}"
        );

        // A fresh nonce, but used from another connection.
        let fresh = s1.sign(&key, Command::TrustList).await.unwrap();
        let mut s2 = Session::connect(std::slice::from_ref(&a_addr))
            .await
            .unwrap();
        let reason = refusal(s2.request(ControlRequest::Signed(Box::new(fresh))).await);
        assert_eq!(reason.code, RefusalCode::Replayed, "{reason}");
        assert!(
            reason.detail.contains("issued to another connection"),
            "{reason}"
        );

        // A request signed for A, sent to B.
        let for_a = s1.sign(&key, Command::TrustList).await.unwrap();
        let mut s3 = Session::connect(std::slice::from_ref(&b_addr))
            .await
            .unwrap();
        let reason = refusal(s3.request(ControlRequest::Signed(Box::new(for_a))).await);
        assert_eq!(reason.code, RefusalCode::Misdirected, "{reason}");
        assert!(
            reason
                .detail
                .starts_with("the request was signed for node key"),
            "{reason}"
        );

        // A tampered command (trust another key) under a valid signature.
        let mut tampered = s1.sign(&key, Command::TrustList).await.unwrap();
        tampered.body.command = Command::TrustAdd {
            user_key: protocol::membership::PublicKey([3; 32]),
        };
        let reason = refusal(s1.request(ControlRequest::Signed(Box::new(tampered))).await);
        assert_eq!(reason.code, RefusalCode::Forged, "{reason}");
        assert!(
            reason
                .detail
                .starts_with("forged or corrupt control request"),
            "{reason}"
        );

        // An honest request still works on every connection.
        assert!(s2.signed(&key, Command::TrustList).await.is_ok());
        assert!(s3.signed(&key, Command::TrustList).await.is_ok());
    });
    assert!(a.log().contains("control request refused"), "{}", a.log());
    drop(b);
}

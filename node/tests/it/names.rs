//! Node names and addressing (issue 16, item 1), and the table and error
//! edges of item 5: real `meshnode start` processes and the real CLI.
//!
//! - names resolve by name, PeerId prefix and `HOST:PORT` wherever a
//!   command takes a node, and `peers` lists the node itself, marked;
//! - a name two nodes claim names neither, and says so;
//! - a node reached by `HOST:PORT` that is not in the user's mesh gets
//!   nothing;
//! - default tables fit 100 columns; a trap is short in `ps` and whole in
//!   `ps VESSEL`; uptime runs while a vessel sleeps;
//! - bind errors, bad join tokens, `trust add --help`, `keygen` and a bad
//!   `--name` say what is wrong in words.

use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::mesh::{peers, stderr, wait_for_peers, Node, User, POLL, TIMEOUT};

/// Longest node name there may be (`MAX_NODE_NAME_BYTES`).
const LONG_NODE_NAME: &str = "kitchen-pi-in-the-garage";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` against `node` (its data directory) and returns the output.
fn cli(user: &User, node: &Node, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--data-dir", node.dir(), "--timeout", "60s"]);
    user.run(&all)
}

/// Two nodes called `names[0]` and `names[1]`, each seeing the other with
/// its name.
fn two_named(user: &User, names: [&str; 2]) -> (Node, Node) {
    let mut a = user.start("a", &[], &["--name", names[0]]);
    let a_addr = a.wait_ready();
    let mut b = user.start("b", &[a_addr], &["--name", names[1]]);
    b.wait_ready();
    let b_id = b.peer_id();
    wait_for_peers(user, &a, "a sees b with its name", |p| {
        p.iter()
            .any(|r| r["peer_id"] == b_id.as_str() && r["name"] == names[1])
    });
    (a, b)
}

fn deploy(user: &User, via: &Node, wasm: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["deploy"];
    args.extend(extra);
    args.push(wasm.to_str().unwrap());
    let out = cli(user, via, &args);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    (text(&out.stdout).trim().to_string(), stderr(&out))
}

/// Polls `ps --json` on `via` until the row of `vessel` satisfies `cond`.
fn wait_row(
    user: &User,
    via: &Node,
    vessel: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let out = cli(user, via, &["ps", "--json"]);
        if out.status.success() {
            let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(r) = rows.as_array().unwrap().iter().find(|r| r["id"] == vessel) {
                if cond(r) {
                    return r.clone();
                }
                last = r.clone();
            }
        }
        std::thread::sleep(POLL);
    }
    panic!("{what}: not within {TIMEOUT:?}; last row: {last}");
}

#[test]
fn nodes_are_addressed_by_name_prefix_and_host_port_and_peers_lists_itself() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let (a, b) = two_named(&user, ["alpha", LONG_NODE_NAME]);
    let (a_id, b_id) = (a.peer_id(), b.peer_id());

    // peers lists the node itself first, marked, with its name.
    let rows = peers(&user, &a, false).unwrap();
    assert_eq!(rows[0]["peer_id"], a_id.as_str(), "{rows:?}");
    assert_eq!(
        (&rows[0]["self"], &rows[0]["name"]),
        (&Value::from(true), &Value::from("alpha"))
    );
    assert!(rows[1..].iter().all(|r| r["self"] == false), "{rows:?}");
    let table = text(&cli(&user, &a, &["peers"]).stdout);
    let me = table.lines().nth(1).unwrap();
    assert!(me.starts_with("alpha ") && me.contains(" self "), "{table}");

    // --node by name, by PeerId prefix and by HOST:PORT all reach b, and
    // say so before anything else.
    let b_quic = std::fs::read_to_string(b.data_dir.join("node.addrs")).unwrap();
    let port = b_quic
        .lines()
        .find(|l| l.contains("/quic-v1/"))
        .and_then(|l| l.split("/udp/").nth(1))
        .and_then(|l| l.split('/').next())
        .unwrap()
        .to_string();
    let host_port = format!("127.0.0.1:{port}");
    for spec in [LONG_NODE_NAME, &b_id[..16], &host_port] {
        let out = cli(&user, &a, &["peers", "--json", "--node", spec]);
        assert!(out.status.success(), "--node {spec}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("talking to {LONG_NODE_NAME} ({b_id})")),
            "--node {spec}: {}",
            stderr(&out)
        );
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows[0]["peer_id"], b_id.as_str(), "--node {spec}: {rows}");
    }

    // deploy --on NAME says where before it uploads; ps shows the name.
    let ticker = crate::support::compile_c("node/tests/it/programs/ticker.c", &[]);
    let (vessel, said) = deploy(
        &user,
        &a,
        &ticker,
        &["--name", "ticker", "--on", LONG_NODE_NAME],
    );
    assert!(
        said.contains(&format!("deploying to {LONG_NODE_NAME} ({b_id})")),
        "{said}"
    );
    let row = wait_row(&user, &a, &vessel, "runs on b", |r| r["state"] == "running");
    assert_eq!(
        (&row["node"], &row["node_name"]),
        (&Value::from(b_id.as_str()), &Value::from(LONG_NODE_NAME))
    );

    // migrate --to by name.
    let out = cli(&user, &a, &["migrate", "--json", "--to", "alpha", &vessel]);
    assert!(out.status.success(), "migrate --to alpha: {}", stderr(&out));
    wait_row(&user, &a, &vessel, "runs on a", |r| {
        r["node"] == a_id.as_str()
    });

    // Nothing or several: an error that lists the candidates.
    let out = cli(&user, &a, &["migrate", "--to", "nowhere", &vessel]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no member is called `nowhere`"), "{err}");
    assert!(
        err.contains(&format!("alpha ({a_id})")) && err.contains(&b_id),
        "{err}"
    );
    let out = cli(&user, &a, &["migrate", "--to", "12D3KooW", &vessel]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("fits more than one member"),
        "{err}"
    );
    assert!(err.contains(&a_id) && err.contains(&b_id), "{err}");
}

#[test]
fn a_name_two_nodes_claim_names_neither_and_is_reported() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let (a, b) = two_named(&user, ["twin", "twin"]);
    let (a_id, b_id) = (a.peer_id(), b.peer_id());

    let rows = peers(&user, &a, false).unwrap();
    for r in rows
        .iter()
        .filter(|r| r["peer_id"] == a_id.as_str() || r["peer_id"] == b_id.as_str())
    {
        assert_eq!(
            r["name_clash"].as_array().map(Vec::len),
            Some(2),
            "{rows:?}"
        );
    }
    let table = text(&cli(&user, &a, &["peers"]).stdout);
    assert_eq!(
        table.matches("name `twin` is claimed by 2 nodes").count(),
        2,
        "{table}"
    );

    // Neither gets what is meant for "twin": not a deployment (refused
    // before the upload), not a --node.
    let ticker = crate::support::compile_c("node/tests/it/programs/ticker.c", &[]);
    for args in [
        vec!["deploy", "--on", "twin", ticker.to_str().unwrap()],
        vec!["peers", "--node", "twin"],
    ] {
        let out = cli(&user, &a, &args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("claimed by more than one node"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&a_id) && err.contains(&b_id),
            "{args:?}: {err}"
        );
    }
    let out = cli(&user, &a, &["ps", "--json"]);
    assert_eq!(text(&out.stdout).trim(), "[]", "a deployment got through");
    // Each is still reachable by its PeerId.
    let out = cli(&user, &a, &["peers", "--json", "--node", &b_id[..20]]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A node that is not in the user's mesh (another user's, which even
/// trusts this user's key, as a node posing as a member would) gets
/// nothing when reached by `HOST:PORT`: the CLI checks its certificate
/// first. Named by its PeerId it is the user's own choice, and answers.
#[test]
fn a_node_reached_by_host_port_must_be_in_the_users_mesh() {
    let _cpu = crate::support::shared_cpu();
    let alice = User::new();
    let mallory = User::new();
    let mut a = alice.start("a", &[], &["--name", "alice-node"]);
    a.wait_ready();
    let mut x = mallory.start("x", &[], &["--name", "poser"]);
    let x_addr = x.wait_ready();
    let key = text(&alice.run(&["keygen"]).stdout).trim().to_string();
    let out = mallory.run(&["trust", "add", &key, "--data-dir", x.dir()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let port = x_addr
        .split("/udp/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let ticker = crate::support::compile_c("node/tests/it/programs/ticker.c", &[]);
    let host_port = format!("127.0.0.1:{port}");
    let out = alice.run(&["deploy", "--node", &host_port, ticker.to_str().unwrap()]);
    assert!(!out.status.success(), "deployed to another user's node");
    let err = stderr(&out);
    assert!(
        err.contains("is certified by user key") && err.contains("not known to be in your mesh"),
        "{err}"
    );
    let out = mallory.run(&["ps", "--json", "--data-dir", x.dir()]);
    assert_eq!(text(&out.stdout).trim(), "[]", "the deployment reached it");
    let out = alice.run(&["peers", "--json", "--node", &x_addr]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn default_tables_fit_100_columns_and_wide_shows_the_rest() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let (a, b) = two_named(&user, [LONG_NODE_NAME, "b-with-a-rather-long-nam"]);
    let ticker = crate::support::compile_c("node/tests/it/programs/ticker.c", &[]);
    let long_vessel = "a-vessel-name-that-goes-on-and-on-".repeat(3);
    let mut ids = Vec::new();
    for i in 0..12 {
        let name = format!("{long_vessel}{i}");
        let on = if i % 2 == 0 {
            "self"
        } else {
            "b-with-a-rather-long-nam"
        };
        let extra = ["--name", name.as_str(), "--replicas", "1", "--on", on];
        let extra: Vec<&str> = if on == "self" {
            extra[..4].to_vec()
        } else {
            extra.to_vec()
        };
        ids.push(deploy(&user, &a, &ticker, &extra).0);
    }
    for id in &ids {
        wait_row(&user, &a, id, "running", |r| r["state"] == "running");
    }
    for args in [&["ps"][..], &["peers"][..]] {
        let out = cli(&user, &a, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let table = text(&out.stdout);
        assert!(table.lines().count() > 2, "{table}");
        for line in table.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: {} columns:\n{line}",
                line.chars().count()
            );
        }
        assert!(
            !table.contains(&b.peer_id()),
            "{args:?} shows a full PeerId:\n{table}"
        );
        let wide = text(&cli(&user, &a, &[args[0], "-o", "wide"]).stdout);
        assert!(wide.contains(&b.peer_id()), "{args:?} -o wide:\n{wide}");
        assert!(wide.lines().any(|l| l.chars().count() > 100), "{wide}");
    }
    let ps = text(&cli(&user, &a, &["ps"]).stdout);
    assert!(ps.contains(" b-with-a-rather…"), "{ps}");
}

#[test]
fn a_trap_is_short_in_ps_and_whole_in_ps_vessel_and_uptime_runs_while_asleep() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut a = user.start("a", &[], &["--name", "solo"]);
    a.wait_ready();

    let trapper = crate::support::compile_c("node/tests/it/programs/trapper.c", &[]);
    let (crashed, _) = deploy(&user, &a, &trapper, &["--name", "crashy"]);
    let row = wait_row(&user, &a, &crashed, "it trapped", |r| {
        r["state"].as_str().is_some_and(|s| s.starts_with("failed"))
    });
    let message = row["state"].as_str().unwrap().to_string();
    assert!(message.len() > 20, "{row}");
    assert_eq!(row["state_short"], "trapped", "{row}");
    let ps = text(&cli(&user, &a, &["ps", "-a"]).stdout);
    let line = ps.lines().find(|l| l.starts_with(&crashed[..8])).unwrap();
    assert!(line.contains(" trapped "), "{ps}");
    assert!(
        !ps.contains(&message),
        "the whole message breaks the table:\n{ps}"
    );
    let whole = text(&cli(&user, &a, &["ps", "crashy"]).stdout);
    assert!(
        whole.contains(&format!("state:       {message}")),
        "{whole}"
    );

    // A vessel asleep in one host call still ages (it showed 0.0 s for
    // minutes: its run time was written only when a slice ended): seen
    // running with an uptime of seconds before it wakes.
    let sleeper = crate::support::compile_c("node/tests/it/programs/sleeper.c", &[]);
    // Without checkpoints nothing ends its one long host call early.
    let (sleeping, _) = deploy(
        &user,
        &a,
        &sleeper,
        &[
            "--name",
            "sleeper",
            "--checkpoint-every",
            "off",
            "--replicas",
            "0",
        ],
    );
    let row = wait_row(&user, &a, &sleeping, "uptime while asleep", |r| {
        r["state"] != "running" || r["uptime_ms"].as_u64().unwrap_or(0) >= 2_000
    });
    assert_eq!(
        row["state"], "running",
        "it woke and ended before its uptime moved: {row}"
    );
    let ps = text(&cli(&user, &a, &["ps"]).stdout);
    let line = ps.lines().find(|l| l.starts_with(&sleeping[..8])).unwrap();
    assert!(
        line.split_whitespace()
            .any(|w| w.ends_with('s') && w[..w.len() - 1].parse::<u64>().is_ok_and(|s| s >= 2)),
        "{ps}"
    );
}

#[test]
fn errors_say_what_is_wrong_in_words() {
    let user = User::new();
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let out = user.run(&[
        "start",
        "--data-dir",
        user.home.path().join("n").to_str().unwrap(),
        "--listen",
        &listen,
        "--no-mdns",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on {listen}: address in use")),
        "{err}"
    );

    // A damaged join token: no decoder's words.
    let out = user.run(&[
        "start",
        "--data-dir",
        user.home.path().join("j").to_str().unwrap(),
        "--join",
        "mnjoin1abcdefgh",
        "--no-mdns",
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("the join token is damaged or cut short"),
        "{err}"
    );
    assert!(
        !err.contains("CBOR") && !err.contains("invalid type"),
        "{err}"
    );

    // A bad name says the rule.
    let out = user.run(&["start", "--name", "Kitchen_Pi"]);
    let err = stderr(&out);
    assert!(
        err.contains("node name `Kitchen_Pi` has `K`: use lowercase letters"),
        "{err}"
    );

    let help = text(&user.run(&["trust", "add", "--help"]).stdout);
    assert!(
        help.contains("<PUBLIC_KEY>") && help.contains("64 hex digits"),
        "{help}"
    );
    let out = user.run(&["keygen"]);
    assert!(stderr(&out).contains("public key"), "{}", stderr(&out));
    assert_eq!(text(&out.stdout).trim().len(), 64);
}

//! Sandbox escape attempts. Each must fail with a clear errno, without a
//! panic, and with nothing read from or written to outside the preopened
//! directory: a canary directory next to the sandbox is compared before and
//! after every run, and so is the directory that holds both.
//!
//! Layout of every test (host side):
//!
//! ```text
//! tmp/outside/secret            "SECRET"   the canary
//! tmp/outside/sub/
//! tmp/sandbox/                  preopened as /sandbox (fd 3)
//! tmp/sandbox/inside/in         "IN"
//! tmp/sandbox/abs_file  -> tmp/outside/secret (absolute)
//! tmp/sandbox/abs_dir   -> tmp/outside        (absolute)
//! tmp/sandbox/root      -> /
//! tmp/sandbox/rel_out   -> ../outside
//! tmp/sandbox/rel_file  -> ../outside/secret
//! tmp/sandbox/deep_up   -> inside/../../outside
//! tmp/sandbox/loop      -> loop
//! tmp/sandbox/l1 -> l2, l2 -> l1
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::wasi_errno::{assert_all_expected, expand, run_wat_text, Run};

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    sandbox: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let outside = root.join("outside");
    let sandbox = root.join("sandbox");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret"), "SECRET").unwrap();
    std::fs::create_dir_all(sandbox.join("inside")).unwrap();
    std::fs::write(sandbox.join("inside/in"), "IN").unwrap();
    symlink(outside.join("secret"), sandbox.join("abs_file")).unwrap();
    symlink(&outside, sandbox.join("abs_dir")).unwrap();
    symlink("/", sandbox.join("root")).unwrap();
    symlink("../outside", sandbox.join("rel_out")).unwrap();
    symlink("../outside/secret", sandbox.join("rel_file")).unwrap();
    symlink("inside/../../outside", sandbox.join("deep_up")).unwrap();
    symlink("loop", sandbox.join("loop")).unwrap();
    symlink("l2", sandbox.join("l1")).unwrap();
    symlink("l1", sandbox.join("l2")).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        sandbox,
        outside,
    }
}

/// Everything observable about a tree: each entry's kind, contents (or link
/// target), size, mtime and inode, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>, u64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let (kind, content) = if m.file_type().is_symlink() {
                (
                    "link",
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&p).unwrap())
            };
            out.insert(
                rel,
                (
                    kind.to_string(),
                    content,
                    m.len(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000,
                    m.ino(),
                ),
            );
        }
    }
    out
}

/// Runs a test body in the fixture and checks that outside stayed untouched
/// and that nothing appeared next to the sandbox.
fn run_in(fx: &Fixture, name: &str, body: &str) -> Run {
    let before = snapshot(&fx.outside);
    let run = run_wat_text(name, &expand(body), &fx.sandbox);
    assert_eq!(
        snapshot(&fx.outside),
        before,
        "{name}: the canary directory outside the sandbox changed"
    );
    let mut top: Vec<_> = std::fs::read_dir(&fx.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["outside", "sandbox"],
        "{name}: something was created next to the sandbox"
    );
    run
}

/// Opens (read-only) through every kind of escape: all EPERM or ELOOP.
#[test]
fn open_escapes() {
    let fx = fixture();
    let run = run_in(
        &fx,
        "open_escapes",
        r#"
(func $try (param $p i32) (param $l i32) (param $lookup i32) (param $oflags i32) (result i32)
  (call $path_open (i32.const 3) (local.get $lookup) (local.get $p) (local.get $l)
    (local.get $oflags) (global.get $R_READ) (global.get $R_READ) (i32.const 0) (global.get $OUT)))
(func $main
  (call $expect (str "dotdot") (global.get $PERM) (call $try (str "../outside/secret") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "dotdot_dir") (global.get $PERM) (call $try (str "..") (global.get $FOLLOW) (global.get $O_DIRECTORY)))
  (call $expect (str "dotdot_nofollow") (global.get $PERM) (call $try (str "../outside/secret") (i32.const 0) (i32.const 0)))
  (call $expect (str "a_dotdot_dotdot") (global.get $PERM) (call $try (str "inside/../../outside/secret") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "dot_dotdot") (global.get $PERM) (call $try (str "./../sandbox/inside/in") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "absolute") (global.get $PERM) (call $try (str "/etc/passwd") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "absolute_guest_prefix") (global.get $PERM) (call $try (str "/sandbox/inside/in") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "proc_self") (global.get $PERM) (call $try (str "/proc/self/environ") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "proc_self_fd") (global.get $PERM) (call $try (str "/proc/self/fd/3") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "proc_relative") (global.get $NOENT) (call $try (str "proc/self/environ") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "abs_symlink_file") (global.get $PERM) (call $try (str "abs_file") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "abs_symlink_file_nofollow") (global.get $LOOP) (call $try (str "abs_file") (i32.const 0) (i32.const 0)))
  (call $expect (str "abs_symlink_dir") (global.get $PERM) (call $try (str "abs_dir/secret") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "abs_symlink_dir_nofollow") (global.get $PERM) (call $try (str "abs_dir/secret") (i32.const 0) (i32.const 0)))
  (call $expect (str "root_symlink") (global.get $PERM) (call $try (str "root/etc/passwd") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "rel_symlink_dir") (global.get $PERM) (call $try (str "rel_out/secret") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "rel_symlink_file") (global.get $PERM) (call $try (str "rel_file") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "symlink_via_inside") (global.get $PERM) (call $try (str "deep_up/secret") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "symlink_loop") (global.get $LOOP) (call $try (str "loop") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "symlink_loop_pair") (global.get $LOOP) (call $try (str "l1") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "symlink_loop_in_dir") (global.get $LOOP) (call $try (str "loop/x") (global.get $FOLLOW) (i32.const 0)))
  (call $expect (str "dir_open_escape") (global.get $PERM) (call $try (str "rel_out") (global.get $FOLLOW) (global.get $O_DIRECTORY)))
  ;; what is allowed: lstat and readlink of the links themselves, which are inside
  (call $ok (str "lstat_abs_link") (call $path_filestat_get (i32.const 3) (i32.const 0) (str "abs_file") (global.get $BUF)))
  (call $expect (str "stat_abs_link") (global.get $PERM) (call $path_filestat_get (i32.const 3) (global.get $FOLLOW) (str "abs_file") (global.get $BUF)))
  (call $expect (str "stat_rel_out") (global.get $PERM) (call $path_filestat_get (i32.const 3) (global.get $FOLLOW) (str "rel_out/secret") (global.get $BUF)))
  (call $ok (str "readlink_abs") (call $path_readlink (i32.const 3) (str "abs_file") (global.get $BUF) (i32.const 256) (global.get $OUT)))
  (call $ok (str "inside_still_works") (call $try (str "inside/../inside/in") (global.get $FOLLOW) (i32.const 0))))
"#,
    );
    assert_all_expected("open_escapes", &run);
}

/// Every call that creates, removes, renames, links or changes something,
/// aimed outside: all EPERM, and the canary is unchanged (checked by run_in).
#[test]
fn write_escapes() {
    let fx = fixture();
    let run = run_in(
        &fx,
        "write_escapes",
        r#"
(func $create (param $p i32) (param $l i32) (param $oflags i32) (result i32)
  (call $path_open (i32.const 3) (global.get $FOLLOW) (local.get $p) (local.get $l)
    (i32.or (global.get $O_CREAT) (local.get $oflags)) (global.get $R_ALL) (global.get $R_ALL) (i32.const 0) (global.get $OUT)))
(func $main
  (call $expect (str "creat_dotdot") (global.get $PERM) (call $create (str "../stolen") (i32.const 0)))
  (call $expect (str "creat_outside") (global.get $PERM) (call $create (str "../outside/new") (i32.const 0)))
  (call $expect (str "trunc_outside") (global.get $PERM) (call $create (str "../outside/secret") (global.get $O_TRUNC)))
  (call $expect (str "creat_abs_dir") (global.get $PERM) (call $create (str "abs_dir/new") (i32.const 0)))
  (call $expect (str "creat_rel_out") (global.get $PERM) (call $create (str "rel_out/new") (i32.const 0)))
  (call $expect (str "trunc_abs_file") (global.get $PERM) (call $create (str "abs_file") (global.get $O_TRUNC)))
  (call $expect (str "trunc_rel_file") (global.get $PERM) (call $create (str "rel_file") (global.get $O_TRUNC)))
  (call $expect (str "creat_absolute") (global.get $PERM) (call $create (str "/tmp/meshnode-escape") (i32.const 0)))
  (call $expect (str "mkdir_dotdot") (global.get $PERM) (call $path_create_directory (i32.const 3) (str "../newdir")))
  (call $expect (str "mkdir_rel_out") (global.get $PERM) (call $path_create_directory (i32.const 3) (str "rel_out/newdir")))
  (call $expect (str "mkdir_abs_dir") (global.get $PERM) (call $path_create_directory (i32.const 3) (str "abs_dir/newdir")))
  (call $expect (str "unlink_outside") (global.get $PERM) (call $path_unlink_file (i32.const 3) (str "../outside/secret")))
  (call $expect (str "unlink_rel_out") (global.get $PERM) (call $path_unlink_file (i32.const 3) (str "rel_out/secret")))
  (call $expect (str "rmdir_rel_out") (global.get $PERM) (call $path_remove_directory (i32.const 3) (str "rel_out/sub")))
  (call $expect (str "rmdir_abs_dir") (global.get $PERM) (call $path_remove_directory (i32.const 3) (str "abs_dir/sub")))
  (call $expect (str "rename_out") (global.get $PERM) (call $path_rename (i32.const 3) (str "inside/in") (i32.const 3) (str "../stolen")))
  (call $expect (str "rename_out_rel") (global.get $PERM) (call $path_rename (i32.const 3) (str "inside/in") (i32.const 3) (str "rel_out/stolen")))
  (call $expect (str "rename_out_abs") (global.get $PERM) (call $path_rename (i32.const 3) (str "inside/in") (i32.const 3) (str "abs_dir/secret")))
  (call $expect (str "rename_in") (global.get $PERM) (call $path_rename (i32.const 3) (str "rel_out/secret") (i32.const 3) (str "inside/stolen")))
  (call $expect (str "rename_dir_in") (global.get $PERM) (call $path_rename (i32.const 3) (str "../outside") (i32.const 3) (str "inside/o")))
  (call $expect (str "link_out") (global.get $PERM) (call $path_link (i32.const 3) (i32.const 0) (str "inside/in") (i32.const 3) (str "rel_out/hl")))
  (call $expect (str "link_in") (global.get $PERM) (call $path_link (i32.const 3) (i32.const 0) (str "rel_out/secret") (i32.const 3) (str "inside/hl")))
  (call $expect (str "link_in_abs") (global.get $PERM) (call $path_link (i32.const 3) (i32.const 0) (str "abs_dir/secret") (i32.const 3) (str "inside/hl")))
  (call $expect (str "symlink_place_out") (global.get $PERM) (call $path_symlink (str "x") (i32.const 3) (str "rel_out/sl")))
  (call $expect (str "symlink_place_dotdot") (global.get $PERM) (call $path_symlink (str "x") (i32.const 3) (str "../sl")))
  (call $expect (str "symlink_absolute_target") (global.get $PERM) (call $path_symlink (str "/etc/passwd") (i32.const 3) (str "inside/abs")))
  (call $expect (str "times_outside") (global.get $PERM)
    (call $path_filestat_set_times (i32.const 3) (global.get $FOLLOW) (str "rel_out/secret") (i64.const 0) (i64.const 0) (global.get $MTIM_NOW)))
  (call $expect (str "times_abs_file") (global.get $PERM)
    (call $path_filestat_set_times (i32.const 3) (global.get $FOLLOW) (str "abs_file") (i64.const 0) (i64.const 0) (global.get $MTIM_NOW)))
  ;; a relative symlink that points out may be made (it is only text), but
  ;; never followed
  (call $ok (str "symlink_rel_target_out") (call $path_symlink (str "../../outside/secret") (i32.const 3) (str "inside/out")))
  (call $expect (str "follow_made_link") (global.get $PERM) (call $create (str "inside/out") (global.get $O_TRUNC)))
  (call $expect (str "write_via_made_link") (global.get $PERM) (call $create (str "inside/out") (i32.const 0))))
"#,
    );
    assert_all_expected("write_escapes", &run);
}

/// Long paths, long names, and a deep tree left by exactly as many `..` as
/// it is deep, plus one.
#[test]
fn long_and_deep_paths() {
    let fx = fixture();
    let run = run_in(
        &fx,
        "long_and_deep",
        r#"
;; Fills BIG with `n` copies of the `l`-byte pattern at `p`, then `tail`;
;; returns the length.
(func $repeat (param $p i32) (param $l i32) (param $n i32) (param $tp i32) (param $tl i32) (result i32)
  (local $at i32)
  (local.set $at (global.get $BIG))
  (block $done (loop $more
    (br_if $done (i32.eqz (local.get $n)))
    (memory.copy (local.get $at) (local.get $p) (local.get $l))
    (local.set $at (i32.add (local.get $at) (local.get $l)))
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (br $more)))
  (memory.copy (local.get $at) (local.get $tp) (local.get $tl))
  (i32.sub (i32.add (local.get $at) (local.get $tl)) (global.get $BIG)))
(func $open_big (param $len i32) (param $oflags i32) (result i32)
  (call $path_open (i32.const 3) (global.get $FOLLOW) (global.get $BIG) (local.get $len)
    (local.get $oflags) (global.get $R_ALL) (global.get $R_ALL) (i32.const 0) (global.get $OUT)))
(func $main
  (local $i i32) (local $len i32)
  ;; 4098 bytes: "a/" x 2048 + "xx"
  (local.set $len (call $repeat (str "a/") (i32.const 2048) (str "xx")))
  (call $expect (str "path_len") (i32.const 4098) (local.get $len))
  (call $expect (str "open_too_long") (global.get $NAMETOOLONG) (call $open_big (local.get $len) (i32.const 0)))
  (call $expect (str "creat_too_long") (global.get $NAMETOOLONG) (call $open_big (local.get $len) (global.get $O_CREAT)))
  (call $expect (str "mkdir_too_long") (global.get $NAMETOOLONG) (call $path_create_directory (i32.const 3) (global.get $BIG) (local.get $len)))
  (call $expect (str "stat_too_long") (global.get $NAMETOOLONG) (call $path_filestat_get (i32.const 3) (i32.const 0) (global.get $BIG) (local.get $len) (global.get $BUF)))
  ;; "../" x 1500: too long as well, long before it could escape
  (local.set $len (call $repeat (str "../") (i32.const 1500) (str "x")))
  (call $expect (str "dotdot_too_long") (global.get $NAMETOOLONG) (call $open_big (local.get $len) (i32.const 0)))
  ;; one 300-byte name: over NAME_MAX
  (local.set $len (call $repeat (str "n") (i32.const 300) (str "")))
  (call $expect (str "name_too_long") (global.get $NAMETOOLONG) (call $open_big (local.get $len) (global.get $O_CREAT)))
  ;; a tree 100 deep: n/n/.../n
  (local.set $i (i32.const 1))
  (loop $mk
    (local.set $len (call $repeat (str "n/") (local.get $i) (str "")))
    (call $must (str "mkdir deep") (call $path_create_directory (i32.const 3) (global.get $BIG) (i32.sub (local.get $len) (i32.const 1))))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $mk (i32.le_u (local.get $i) (i32.const 100))))
  ;; then up 100 levels: the root again; one more is outside
  (local.set $len (call $deep_path (i32.const 100) (i32.const 100) (str "inside/in")))
  (call $ok (str "deep_down_and_up") (call $open_big (local.get $len) (i32.const 0)))
  (local.set $len (call $deep_path (i32.const 100) (i32.const 101) (str "sandbox/inside/in")))
  (call $expect (str "deep_down_and_past_root") (global.get $PERM) (call $open_big (local.get $len) (i32.const 0)))
  (local.set $len (call $deep_path (i32.const 100) (i32.const 101) (str "outside/new")))
  (call $expect (str "deep_creat_past_root") (global.get $PERM) (call $open_big (local.get $len) (global.get $O_CREAT))))
;; BIG := "n/" x down, "../" x up, tail
(func $deep_path (param $down i32) (param $up i32) (param $tp i32) (param $tl i32) (result i32)
  (local $at i32)
  (local.set $at (global.get $BIG))
  (block $d (loop $l
    (br_if $d (i32.eqz (local.get $down)))
    (i32.store16 (local.get $at) (i32.const 0x2f6e)) ;; "n/"
    (local.set $at (i32.add (local.get $at) (i32.const 2)))
    (local.set $down (i32.sub (local.get $down) (i32.const 1)))
    (br $l)))
  (block $d (loop $l
    (br_if $d (i32.eqz (local.get $up)))
    (i32.store16 (local.get $at) (i32.const 0x2e2e)) ;; ".."
    (i32.store8 (i32.add (local.get $at) (i32.const 2)) (i32.const 0x2f))
    (local.set $at (i32.add (local.get $at) (i32.const 3)))
    (local.set $up (i32.sub (local.get $up) (i32.const 1)))
    (br $l)))
  (memory.copy (local.get $at) (local.get $tp) (local.get $tl))
  (i32.sub (i32.add (local.get $at) (local.get $tl)) (global.get $BIG)))
"#,
    );
    assert_all_expected("long_and_deep", &run);
}

/// Renumbering onto and from a preopen never widens what a descriptor can
/// reach, and readdir lists only what is inside.
#[test]
fn renumber_and_readdir() {
    let fx = fixture();
    let run = run_in(
        &fx,
        "renumber_and_readdir",
        r#"
(func $try (param $fd i32) (param $p i32) (param $l i32) (result i32)
  (call $path_open (local.get $fd) (global.get $FOLLOW) (local.get $p) (local.get $l)
    (i32.const 0) (global.get $R_READ) (global.get $R_READ) (i32.const 0) (global.get $OUT)))
;; Prints every name in the listing of `fd`, one `name:` line each.
(func $list (param $fd i32)
  (local $at i32) (local $end i32) (local $n i32)
  (call $must (str "readdir") (call $fd_readdir (local.get $fd) (global.get $BIG) (i32.const 32768) (i64.const 0) (global.get $OUT)))
  (local.set $at (global.get $BIG))
  (local.set $end (i32.add (global.get $BIG) (i32.load (global.get $OUT))))
  (block $done (loop $next
    (br_if $done (i32.ge_u (i32.add (local.get $at) (i32.const 24)) (local.get $end)))
    (local.set $n (i32.load (i32.add (local.get $at) (i32.const 16))))
    (call $print (str "name:"))
    (call $print (i32.add (local.get $at) (i32.const 24)) (local.get $n))
    (call $nl)
    (local.set $at (i32.add (local.get $at) (i32.add (i32.const 24) (local.get $n))))
    (br $next))))
(func $main
  (local $f i32) (local $d i32)
  (call $list (i32.const 3))
  (local.set $d (call $open (str "inside") (global.get $O_DIRECTORY) (global.get $R_DIR) (i32.const 0)))
  (call $list (local.get $d))
  (call $expect (str "dir_fd_dotdot") (global.get $PERM) (call $try (local.get $d) (str "../../outside/secret")))
  ;; every directory descriptor is a root of its own, as in wasmtime
  (call $expect (str "dir_fd_dotdot_inside") (global.get $PERM) (call $try (local.get $d) (str "../inside/in")))
  ;; the preopen moved to another number still stops at its root
  (local.set $f (call $open (str "inside/in") (i32.const 0) (global.get $R_READ) (i32.const 0)))
  (call $ok (str "renumber_preopen_away") (call $fd_renumber (i32.const 3) (local.get $f)))
  (call $expect (str "old_number_gone") (global.get $BADF) (call $try (i32.const 3) (str "inside/in")))
  (call $expect (str "moved_preopen_escape") (global.get $PERM) (call $try (local.get $f) (str "../outside/secret")))
  (call $ok (str "moved_preopen_works") (call $try (local.get $f) (str "inside/in")))
  (call $expect (str "lowest_free_is_3") (i32.const 3) (i32.load (global.get $OUT)))
  (call $ok (str "moved_preopen_prestat") (call $fd_prestat_get (local.get $f) (global.get $BUF)))
  ;; a file renumbered onto the preopen's number is just a file
  (call $ok (str "renumber_file_onto_preopen") (call $fd_renumber (i32.const 3) (local.get $f)))
  (call $expect (str "file_on_preopen_slot") (global.get $NOTDIR) (call $try (local.get $f) (str "inside/in")))
  (call $expect (str "file_on_preopen_prestat") (global.get $BADF) (call $fd_prestat_get (local.get $f) (global.get $BUF)))
  ;; with no preopen left, the directory still stops at the real root
  (call $expect (str "dir_fd_still_confined") (global.get $PERM) (call $try (local.get $d) (str "../../outside/secret")))
  (call $ok (str "dir_fd_still_works") (call $try (local.get $d) (str "in"))))
"#,
    );
    assert_all_expected("renumber_and_readdir", &run);
    let names: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("name:"))
        .collect();
    let expected_root = [
        ".", "..", "abs_dir", "abs_file", "deep_up", "inside", "l1", "l2", "loop", "rel_file",
        "rel_out", "root",
    ];
    assert_eq!(
        &names[..expected_root.len()],
        expected_root,
        "listing of the preopen"
    );
    assert_eq!(
        &names[expected_root.len()..],
        [".", "..", "in"],
        "listing of inside/"
    );
    assert!(
        !run.stdout.contains("secret"),
        "an outside name leaked: {}",
        run.stdout
    );
}

/// A host thread swaps a symlink between a directory inside and one outside
/// (by absolute and by relative target) while the guest creates, writes and
/// removes a file through it, many times. Whatever wins each race, nothing
/// may land outside.
#[test]
fn symlink_swapped_during_resolution() {
    let _cpu = crate::support::shared_cpu();
    let fx = fixture();
    let link = fx.sandbox.join("flip");
    symlink("inside", &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, sandbox, outside) = (stop.clone(), fx.sandbox.clone(), fx.outside.clone());
        std::thread::spawn(move || {
            let targets: [PathBuf; 4] = [
                "inside".into(),
                outside.clone(),
                "inside".into(),
                "../outside".into(),
            ];
            let tmp = sandbox.join("flip.tmp");
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                symlink(&targets[i % targets.len()], &tmp).unwrap();
                // rename over the link: atomic, so every lookup sees one target
                std::fs::rename(&tmp, sandbox.join("flip")).unwrap();
                i += 1;
            }
            i
        })
    };
    let run = run_in(
        &fx,
        "swap_race",
        r#"
(func $main
  (local $i i32) (local $e i32) (local $fd i32) (local $opened i32) (local $refused i32)
  (loop $again
    (local.set $e (call $path_open (i32.const 3) (global.get $FOLLOW) (str "flip/victim")
      (i32.or (global.get $O_CREAT) (global.get $O_TRUNC)) (global.get $R_ALL) (global.get $R_ALL) (i32.const 0) (global.get $OUT)))
    (if (i32.eqz (local.get $e))
      (then
        (local.set $opened (i32.add (local.get $opened) (i32.const 1)))
        (local.set $fd (i32.load (global.get $OUT)))
        (drop (call $write (local.get $fd) (str "pwned")))
        (drop (call $fd_close (local.get $fd)))
        (drop (call $path_unlink_file (i32.const 3) (str "flip/victim"))))
      (else
        (if (i32.ne (local.get $e) (global.get $PERM))
          (then (call $expect (str "unexpected") (global.get $PERM) (local.get $e))))
        (local.set $refused (i32.add (local.get $refused) (i32.const 1)))))
    (drop (call $path_create_directory (i32.const 3) (str "flip/newdir")))
    (drop (call $path_remove_directory (i32.const 3) (str "flip/newdir")))
    (drop (call $path_symlink (str "x") (i32.const 3) (str "flip/sl")))
    (drop (call $path_unlink_file (i32.const 3) (str "flip/sl")))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $again (i32.lt_u (local.get $i) (i32.const 3000))))
  (call $print (str "opened:")) (call $print_num (local.get $opened)) (call $nl)
  (call $print (str "refused:")) (call $print_num (local.get $refused)) (call $nl))
"#,
    );
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert_all_expected("swap_race", &run);
    assert!(flips > 10, "the symlink was swapped only {flips} times");
    assert!(
        !fx.outside.join("victim").exists()
            && !fx.outside.join("newdir").exists()
            && !fx.outside.join("sl").exists()
    );
    // Both outcomes happened, so the race was real.
    assert!(
        run.stdout.contains("opened:") && !run.stdout.contains("opened:0\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("refused:0\n"), "{}", run.stdout);
}

/// A WASI state is input too (it arrives from another node): paths in it are
/// resolved beneath the preopen like guest paths, so a state naming `..`, an
/// absolute path or a symlink out cannot be rebuilt into a handle outside.
/// And a directory opened as "." (stored as the empty path) rebuilds.
#[test]
fn hostile_state_cannot_reach_outside() {
    use meshnode::dock::wasi::abi::{
        OFLAGS_DIRECTORY, RIGHTS_DIRECTORY, RIGHTS_DIRECTORY_INHERITING,
    };
    use meshnode::dock::wasi::{DirMapping, Stdio, WasiCtx, WasiOptions};
    use protocol::wasi::DescriptorKind;

    let fx = fixture();
    let dirs = vec![DirMapping {
        host: fx.sandbox.clone(),
        guest: "/sandbox".into(),
    }];
    let mut ctx = WasiCtx::new(WasiOptions {
        dirs: dirs.clone(),
        ..Default::default()
    })
    .unwrap();
    let fd = ctx
        .path_open(
            3,
            0,
            b".",
            OFLAGS_DIRECTORY,
            RIGHTS_DIRECTORY,
            RIGHTS_DIRECTORY_INHERITING,
            0,
        )
        .unwrap();
    let file = ctx.path_open(3, 1, b"inside/in", 0, 2, 0, 0).unwrap();
    let state = ctx.capture_state().unwrap();
    assert_eq!(
        state.fds[&fd].kind,
        DescriptorKind::Directory {
            preopen: 0,
            path: Vec::new()
        }
    );
    WasiCtx::rebuild(state.clone(), &dirs, Stdio::default())
        .expect("a directory opened as . rebuilds");

    let before = snapshot(&fx.outside);
    let escapes: [&[u8]; 6] = [
        b"../outside/secret",
        b"/etc/passwd",
        b"abs_file",
        b"rel_file",
        b"rel_out/secret",
        b"inside/../../outside/secret",
    ];
    for path in escapes {
        let mut bad = state.clone();
        if let DescriptorKind::File { path: p, .. } = &mut bad.fds.get_mut(&file).unwrap().kind {
            *p = path.to_vec();
        }
        let err = WasiCtx::rebuild(bad, &dirs, Stdio::default()).err();
        assert!(
            err.is_some(),
            "a state naming file {} was rebuilt",
            String::from_utf8_lossy(path)
        );
        let mut bad = state.clone();
        bad.fds.get_mut(&fd).unwrap().kind = DescriptorKind::Directory {
            preopen: 0,
            path: path.to_vec(),
        };
        let err = WasiCtx::rebuild(bad, &dirs, Stdio::default()).err();
        assert!(
            err.is_some(),
            "a state naming directory {} was rebuilt",
            String::from_utf8_lossy(path)
        );
    }
    // a preopen index that does not exist is refused, not a panic
    let mut bad = state.clone();
    bad.fds.get_mut(&fd).unwrap().kind = DescriptorKind::Directory {
        preopen: 7,
        path: Vec::new(),
    };
    assert!(WasiCtx::rebuild(bad, &dirs, Stdio::default()).is_err());
    assert_eq!(snapshot(&fx.outside), before);
}

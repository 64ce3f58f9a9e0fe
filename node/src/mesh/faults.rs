//! Test-only fault injection at exact steps of the migration protocol
//! (`MESHNODE_FAULT=<point>`), used by both sides of a migration. A leaf,
//! so that the source, the destination and recovery need not use each
//! other for it.

/// Test-only fault injection: whether `MESHNODE_FAULT` names `point` (a
/// step that then fails instead of exiting the node).
pub(super) fn fault_active(point: &str) -> bool {
    std::env::var("MESHNODE_FAULT").is_ok_and(|f| f == point)
}

/// Test-only fault injection: `MESHNODE_FAULT=<point>` makes the node exit
/// at that point of the migration protocol, as if it crashed there. The
/// fault tests use it to kill a node at an exact step.
pub fn fault_point(point: &str) {
    if std::env::var("MESHNODE_FAULT").is_ok_and(|f| f == point) {
        eprintln!("meshnode: fault injection: exiting at {point}");
        std::process::exit(86);
    }
}

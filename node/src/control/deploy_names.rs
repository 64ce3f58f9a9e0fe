//! `deploy` without `--name`: the vessel is named after its module, and
//! when a live vessel of the mesh holds that name already (a second copy
//! of the same program) the first free `NAME-2`, `NAME-3`, … is chosen,
//! so that a plain deploy never clashes (`mesh::clash`). An explicit
//! `--name` is never changed: a clash is refused, naming the vessel.

use protocol::control::VesselInfo;

use crate::mesh::clash::holds_claims;

/// How many suffixes a default name tries before it gives up and lets the
/// node refuse the clash: more copies of one program than a node may run
/// (`MAX_VESSELS_PER_NODE`) times a mesh's size is not a default any more.
pub const MAX_DEFAULT_NAME_SUFFIX: u32 = 4096;

/// The name a vessel of module `stem` gets by default: `stem`, or the
/// first of `stem-2`, `stem-3`, … that no live vessel in `rows` holds.
pub fn free_name(rows: &[VesselInfo], stem: &str) -> String {
    let taken = |name: &str| {
        rows.iter()
            .any(|r| r.name == name && holds_claims(&r.state))
    };
    if !taken(stem) {
        return stem.to_string();
    }
    (2..=MAX_DEFAULT_NAME_SUFFIX)
        .map(|n| format!("{stem}-{n}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| stem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_name_skips_live_names_and_reuses_ended_ones() {
        let row = |name: &str, state: &str| VesselInfo {
            name: name.into(),
            state: state.into(),
            ..crate::mesh::clash::tests::row(1, "", "", &[])
        };
        assert_eq!(free_name(&[], "web"), "web");
        let rows = [row("web", "running"), row("web-2", "migrating")];
        assert_eq!(free_name(&rows, "web"), "web-3");
        let rows = [row("web", "running"), row("web-2", "exited")];
        assert_eq!(free_name(&rows, "web"), "web-2");
    }
}

//! The geographic WAN model: `[[region]]`s with a latitude and longitude,
//! a node's `region`, `[wan]`'s constants, and `[[node_group]]`s that make
//! many nodes without a `[[node]]` each.
//!
//! The one-way latency between two nodes is the great-circle distance
//! between their regions' centres (`in_region_km` within one region), times
//! `path_inflation` (fibre does not follow great circles), at
//! `speed_km_per_ms` (light in fibre: about 200 km/ms), plus each end's
//! access link, drawn once per node from `access_ms` with the scenario's
//! seed and the node's name (so adding a node changes no other node's).
//! Jitter is `jitter_ms` between regions, `in_region_jitter_ms` within one.
//! An explicit `[[link]]` still overrides a pair.

use serde::Deserialize;

use super::sections::RawNode;
use super::{LinkParams, MAX_NODES};
use crate::fields::{Ck, ScenarioError, MAX_LATENCY_MS};
use crate::rng::Rng;

/// Regions: a handful of data centres is the point (four in scale.toml);
/// 16 is plenty and keeps error messages that list them short.
pub const MAX_REGIONS: usize = 16;
/// `[[node_group]]`s: each makes up to MAX_NODES nodes.
pub const MAX_NODE_GROUPS: usize = 32;
/// Mean radius of the earth, for the great-circle distance.
const EARTH_RADIUS_KM: f64 = 6371.0;
/// Light in fibre (about two thirds of c).
const DEFAULT_SPEED_KM_PER_MS: f64 = 200.0;
/// Light in vacuum: nothing is faster.
const MAX_SPEED_KM_PER_MS: f64 = 300.0;
/// Real paths are about 1.5 times the great circle.
const DEFAULT_PATH_INFLATION: f64 = 1.5;
/// A path ten times the great circle is a mistake, not a route.
const MAX_PATH_INFLATION: f64 = 10.0;
/// Two nodes in one region are this far apart.
const DEFAULT_IN_REGION_KM: f64 = 300.0;
/// Half the earth's circumference: no two points are further apart.
const MAX_DISTANCE_KM: f64 = 20_040.0;
/// Each node's access link (one way), drawn uniformly from this range.
const DEFAULT_ACCESS_MS: (f64, f64) = (1.0, 2.0);
/// Latencies are rounded to 1/ROUND_PER_MS ms, so reports read cleanly.
const ROUND_PER_MS: f64 = 100.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegion {
    name: String,
    lat: f64,
    lon: f64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWan {
    speed_km_per_ms: Option<f64>,
    path_inflation: Option<f64>,
    in_region_km: Option<f64>,
    access_ms: Option<Vec<f64>>,
    jitter_ms: Option<f64>,
    in_region_jitter_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNodeGroup {
    prefix: String,
    count: usize,
    region: Option<String>,
    arch: Option<String>,
}

/// A region: a name and where its centre is.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

/// `[wan]`: the model's constants.
#[derive(Debug, Clone, PartialEq)]
pub struct Wan {
    pub regions: Vec<Region>,
    pub speed_km_per_ms: f64,
    pub path_inflation: f64,
    pub in_region_km: f64,
    /// (lowest, highest) one-way latency of a node's access link.
    pub access_ms: (f64, f64),
    pub jitter_ms: f64,
    pub in_region_jitter_ms: f64,
}

/// The regions, checked: named once each, on the globe.
pub(super) fn regions(ck: &Ck, raw: &[RawRegion]) -> Result<Vec<Region>, ScenarioError> {
    ck.count("region", raw.len(), MAX_REGIONS)?;
    let mut regions = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let f = format!("region[{i}]");
        ck.name(&format!("{f}.name"), &r.name)?;
        regions.push(Region {
            name: r.name.clone(),
            lat: ck.range(&format!("{f}.lat"), r.lat, -90.0, 90.0)?,
            lon: ck.range(&format!("{f}.lon"), r.lon, -180.0, 180.0)?,
        });
    }
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    ck.unique("region", &names)?;
    Ok(regions)
}

/// `[wan]` with its defaults; None when there are no regions (a `[wan]`
/// without them is an error: it would do nothing).
pub(super) fn wan(
    ck: &Ck,
    regions: Vec<Region>,
    raw: &Option<RawWan>,
) -> Result<Option<Wan>, ScenarioError> {
    if regions.is_empty() {
        if raw.is_some() {
            return Err(ck.err("wan", "needs at least one [[region]]"));
        }
        return Ok(None);
    }
    let default = RawWan::default();
    let w = raw.as_ref().unwrap_or(&default);
    let get = |name: &str, v: Option<f64>, default: f64, lo: f64, hi: f64| match v {
        Some(v) => ck.range(&format!("wan.{name}"), v, lo, hi),
        None => Ok(default),
    };
    let speed = get(
        "speed_km_per_ms",
        w.speed_km_per_ms,
        DEFAULT_SPEED_KM_PER_MS,
        f64::MIN_POSITIVE,
        MAX_SPEED_KM_PER_MS,
    )?;
    let access_ms = match &w.access_ms {
        None => DEFAULT_ACCESS_MS,
        Some(v) => {
            let [lo, hi] = v[..] else {
                return Err(ck.err("wan.access_ms", "give [lowest, highest] in ms"));
            };
            let lo = ck.range("wan.access_ms[0]", lo, 0.0, MAX_LATENCY_MS)?;
            let hi = ck.range("wan.access_ms[1]", hi, lo, MAX_LATENCY_MS)?;
            (lo, hi)
        }
    };
    Ok(Some(Wan {
        regions,
        speed_km_per_ms: speed,
        path_inflation: get(
            "path_inflation",
            w.path_inflation,
            DEFAULT_PATH_INFLATION,
            1.0,
            MAX_PATH_INFLATION,
        )?,
        in_region_km: get(
            "in_region_km",
            w.in_region_km,
            DEFAULT_IN_REGION_KM,
            0.0,
            MAX_DISTANCE_KM,
        )?,
        access_ms,
        jitter_ms: get("jitter_ms", w.jitter_ms, 0.0, 0.0, MAX_LATENCY_MS)?,
        in_region_jitter_ms: get(
            "in_region_jitter_ms",
            w.in_region_jitter_ms,
            0.0,
            0.0,
            MAX_LATENCY_MS,
        )?,
    }))
}

/// The nodes the `[[node_group]]`s stand for: `count` nodes named
/// PREFIX1, PREFIX2, … in `region`, after the `[[node]]`s.
pub(super) fn expand_groups(ck: &Ck, raw: &[RawNodeGroup]) -> Result<Vec<RawNode>, ScenarioError> {
    ck.count("node_group", raw.len(), MAX_NODE_GROUPS)?;
    let mut nodes = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let f = format!("node_group[{i}]");
        if g.count == 0 || g.count > MAX_NODES {
            return Err(ck.err(
                &format!("{f}.count"),
                format!("must be between 1 and {MAX_NODES} (got {})", g.count),
            ));
        }
        // The longest name it makes must be a name.
        ck.name(&format!("{f}.prefix"), &format!("{}{}", g.prefix, g.count))?;
        for k in 1..=g.count {
            nodes.push(RawNode {
                name: format!("{}{k}", g.prefix),
                arch: g.arch.clone(),
                build: None,
                env: None,
                region: g.region.clone(),
            });
        }
    }
    Ok(nodes)
}

/// Each node's region, by index into `wan.regions`: every node needs one
/// when there are regions.
pub(super) fn node_regions(
    ck: &Ck,
    wan: Option<&Wan>,
    raw: &[RawNode],
) -> Result<Vec<Option<usize>>, ScenarioError> {
    raw.iter()
        .enumerate()
        .map(|(i, n)| {
            let f = format!("node[{i}].region");
            match (wan, &n.region) {
                (None, None) => Ok(None),
                (None, Some(r)) => {
                    Err(ck.err(&f, format!("no [[region]] named {r:?} (none given)")))
                }
                (Some(_), None) => Err(ck.err(
                    &f,
                    format!(
                        "missing: with [[region]]s every node needs one (node {:?})",
                        n.name
                    ),
                )),
                (Some(w), Some(r)) => w
                    .regions
                    .iter()
                    .position(|x| x.name == *r)
                    .map(Some)
                    .ok_or_else(|| {
                        let names: Vec<&str> = w.regions.iter().map(|x| x.name.as_str()).collect();
                        ck.err(
                            &f,
                            format!("no [[region]] named {r:?} (regions: {})", names.join(", ")),
                        )
                    }),
            }
        })
        .collect()
}

/// The great-circle distance between two points (haversine).
pub fn great_circle_km(a: &Region, b: &Region) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

fn round(ms: f64) -> f64 {
    (ms * ROUND_PER_MS).round() / ROUND_PER_MS
}

impl Wan {
    /// Node `name`'s access-link latency (one way), from its own stream.
    pub fn access_ms(&self, seed: u64, name: &str) -> f64 {
        let u = Rng::for_link(seed, "access", name).unit();
        round(self.access_ms.0 + u * (self.access_ms.1 - self.access_ms.0))
    }

    /// The one-way latency and jitter between regions `a` and `b`, without
    /// the access links.
    pub fn core_ms(&self, a: usize, b: usize) -> (f64, f64) {
        let (km, jitter) = if a == b {
            (self.in_region_km, self.in_region_jitter_ms)
        } else {
            (
                great_circle_km(&self.regions[a], &self.regions[b]),
                self.jitter_ms,
            )
        };
        (km * self.path_inflation / self.speed_km_per_ms, jitter)
    }

    /// Sets the latency and jitter of every pair in `links` from the
    /// model; the other parameters stay as `link_default` made them.
    pub fn apply(
        &self,
        seed: u64,
        names: &[String],
        regions: &[Option<usize>],
        links: &mut [Vec<LinkParams>],
    ) {
        let access: Vec<f64> = names.iter().map(|n| self.access_ms(seed, n)).collect();
        for i in 0..names.len() {
            for j in 0..names.len() {
                let (Some(ri), Some(rj)) = (regions[i], regions[j]) else {
                    continue;
                };
                if i == j {
                    continue;
                }
                let (core, jitter) = self.core_ms(ri, rj);
                links[i][j].latency_ms = round(core + access[i] + access[j]);
                links[i][j].jitter_ms = jitter;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, lat: f64, lon: f64) -> Region {
        Region {
            name: name.into(),
            lat,
            lon,
        }
    }

    #[test]
    fn great_circle_matches_known_distances() {
        let fra = region("fra", 50.11, 8.68);
        let sin = region("sin", 1.35, 103.82);
        let d = great_circle_km(&fra, &sin);
        // Frankfurt–Singapore is about 10,260 km.
        assert!((10_150.0..10_350.0).contains(&d), "{d}");
        assert_eq!(great_circle_km(&fra, &fra), 0.0);
        let a = region("a", 0.0, 0.0);
        let b = region("b", 0.0, 180.0);
        assert!((great_circle_km(&a, &b) - 20_015.1).abs() < 1.0);
    }

    #[test]
    fn latency_is_distance_inflation_speed_plus_access() {
        let wan = Wan {
            regions: vec![region("a", 0.0, 0.0), region("b", 0.0, 90.0)],
            speed_km_per_ms: 200.0,
            path_inflation: 1.5,
            in_region_km: 300.0,
            access_ms: (1.0, 1.0),
            jitter_ms: 1.0,
            in_region_jitter_ms: 0.2,
        };
        let names: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let mut links = vec![vec![LinkParams::default(); 3]; 3];
        wan.apply(7, &names, &[Some(0), Some(0), Some(1)], &mut links);
        // In a region: 300 km × 1.5 / 200 = 2.25 ms, plus 1 + 1.
        assert_eq!(links[0][1].latency_ms, 4.25);
        assert_eq!(links[0][1].jitter_ms, 0.2);
        // A quarter of the equator: 10,007.5 km × 1.5 / 200 = 75.06 ms.
        assert!((links[0][2].latency_ms - 77.06).abs() < 0.02);
        assert_eq!(links[0][2], links[2][0]);
        assert_eq!(links[2][0].jitter_ms, 1.0);
    }

    #[test]
    fn access_links_are_seeded_per_node() {
        let wan = Wan {
            regions: vec![region("a", 0.0, 0.0)],
            speed_km_per_ms: 200.0,
            path_inflation: 1.5,
            in_region_km: 300.0,
            access_ms: (1.0, 3.0),
            jitter_ms: 0.0,
            in_region_jitter_ms: 0.0,
        };
        let a1 = wan.access_ms(1, "a");
        assert!((1.0..=3.0).contains(&a1));
        assert_eq!(a1, wan.access_ms(1, "a"));
        let spread: Vec<f64> = (0..50).map(|s| wan.access_ms(s, "a")).collect();
        assert!(spread.iter().any(|v| *v < 1.5) && spread.iter().any(|v| *v > 2.5));
    }

    fn parse(text: &str) -> Result<crate::scenario::Scenario, String> {
        crate::scenario::Scenario::from_toml(std::path::Path::new("w.toml"), text).map_err(|e| e.0)
    }

    const GEO: &str = r#"
        seed = 3
        [[region]]
        name = "fra"
        lat = 50.11
        lon = 8.68
        [[region]]
        name = "sin"
        lat = 1.35
        lon = 103.82
        [wan]
        access_ms = [1, 2]
        jitter_ms = 1
        in_region_jitter_ms = 0.2
        [[node]]
        name = "solo"
        region = "fra"
        [[node_group]]
        prefix = "fra"
        count = 3
        region = "fra"
        [[node_group]]
        prefix = "sin"
        count = 2
        region = "sin"
    "#;

    #[test]
    fn groups_expand_and_links_come_from_the_model() {
        let s = parse(GEO).unwrap();
        let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["solo", "fra1", "fra2", "fra3", "sin1", "sin2"]);
        assert_eq!(s.nodes[4].region, Some(1));
        // Within Frankfurt: 2.25 ms plus two access links of 1–2 ms.
        let l = s.links[1][2];
        assert!((4.25..=6.25).contains(&l.latency_ms), "{l:?}");
        assert_eq!(l.jitter_ms, 0.2);
        // Frankfurt–Singapore: about 77 ms plus the access links.
        let l = s.links[1][4];
        assert!((78.0..=81.5).contains(&l.latency_ms), "{l:?}");
        assert_eq!(s.links[4][1], l);
        // The seed draws the access links; --seed redraws them.
        let again = parse(GEO).unwrap();
        assert_eq!(again.links, s.links);
        let other = crate::scenario::Scenario::from_toml_seeded(
            std::path::Path::new("w.toml"),
            GEO,
            Some(4),
        )
        .unwrap();
        assert_ne!(other.links, s.links);
        assert_eq!(other.seed, 4);
    }

    #[test]
    fn an_explicit_link_overrides_the_model() {
        let s = parse(&format!(
            "{GEO}\n[[link]]\nbetween = [\"fra1\", \"sin2\"]\nlatency_ms = 300\n"
        ))
        .unwrap();
        assert_eq!(s.links[1][5].latency_ms, 300.0);
        assert_eq!(s.links[5][1].latency_ms, 300.0);
        assert_eq!(
            s.links[1][5].jitter_ms, 1.0,
            "unset fields keep the model's"
        );
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let cases = [
            (
                GEO.replace("lat = 1.35", "lat = 91"),
                "w.toml: region[1].lat: must be between -90 and 90 (got 91)",
            ),
            (
                GEO.replace("region = \"sin\"", "region = \"syd\""),
                "region: no [[region]] named \"syd\" (regions: fra, sin)",
            ),
            (
                GEO.replace("count = 2", "count = 0"),
                "w.toml: node_group[1].count: must be between 1 and 128 (got 0)",
            ),
            (
                GEO.replace("count = 2", "count = 200"),
                "node_group[1].count: must be between 1 and 128 (got 200)",
            ),
            (
                GEO.replace("access_ms = [1, 2]", "access_ms = [2, 1]"),
                "w.toml: wan.access_ms[1]: must be between 2 and 10000 (got 1)",
            ),
            (
                GEO.replace("access_ms = [1, 2]", "access_ms = [1]"),
                "w.toml: wan.access_ms: give [lowest, highest] in ms",
            ),
            (
                GEO.replace("jitter_ms = 1\n", "speed_km_per_ms = 400\n"),
                "w.toml: wan.speed_km_per_ms: must be between",
            ),
            (
                GEO.replace("prefix = \"sin\"", "prefix = \"fra\""),
                "node[4].name: \"fra1\" is used twice",
            ),
            (
                GEO.replace(
                    "        region = \"fra\"\n        [[node_group]]",
                    "        [[node_group]]",
                ),
                "w.toml: node[0].region: missing: with [[region]]s every node needs one",
            ),
            (
                "[wan]\njitter_ms = 1\n[[node]]\nname = \"a\"\n".to_string(),
                "w.toml: wan: needs at least one [[region]]",
            ),
            (
                "[[node]]\nname = \"a\"\nregion = \"x\"\n".to_string(),
                "w.toml: node[0].region: no [[region]] named \"x\" (none given)",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{e}\n  wanted: {want}");
        }
    }

    #[test]
    fn a_hundred_nodes_from_four_groups() {
        let mut text = String::from("[wan]\n");
        for (name, lat, lon) in [("a", 0, 0), ("b", 10, 10), ("c", 20, 20), ("d", 30, 30)] {
            text.push_str(&format!(
                "[[region]]\nname = \"{name}\"\nlat = {lat}\nlon = {lon}\n\
                 [[node_group]]\nprefix = \"{name}\"\ncount = 25\nregion = \"{name}\"\n"
            ));
        }
        let s = parse(&text).unwrap();
        assert_eq!(s.nodes.len(), 100);
        assert_eq!(s.links.len(), 100);
        assert_eq!(
            crate::scenario::Scenario::addr(99).to_string(),
            "10.77.0.100"
        );
    }

    #[test]
    fn traffic_window_wait_for_mesh_and_the_new_checks_parse() {
        let s = parse(&format!(
            "wait_for_mesh = false\nduration = \"60s\"\ntraffic_window = [\"30s\", \"60s\"]\n{GEO}\n\
             [[assert]]\nkind = \"converged\"\nwithin = \"30s\"\n\
             [[assert]]\nkind = \"node-traffic\"\nwindow = [\"30s\", \"60s\"]\nmax_kb_per_s = 4\n"
        ))
        .unwrap();
        assert!(!s.wait_for_mesh);
        assert_eq!(s.traffic_window.1, std::time::Duration::from_secs(60));
        assert_eq!(s.asserts.len(), 2);
        let cases = [
            (
                format!("duration = \"40s\"\ntraffic_window = [\"30s\", \"60s\"]\n{GEO}"),
                "w.toml: traffic_window: ends after the run (40s)",
            ),
            (
                format!("{GEO}\n[[assert]]\nkind = \"converged\"\n"),
                "w.toml: assert[0].within: missing (the bound after the cold start)",
            ),
            (
                format!("{GEO}\n[[assert]]\nkind = \"node-traffic\"\nwindow = [\"1s\", \"2s\"]\n"),
                "w.toml: assert[0].max_kb_per_s: missing",
            ),
            (
                format!("{GEO}\n[[assert]]\nkind = \"node-traffic\"\nwindow = [\"1s\", \"2s\"]\nmax_kb_per_s = -1\n"),
                "assert[0].max_kb_per_s: must be between 0 and",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{e}\n  wanted: {want}");
        }
    }
}

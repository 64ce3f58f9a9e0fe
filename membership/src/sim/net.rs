//! The simulated network: nodes placed in a few regions, each link's
//! one-way latency the great-circle distance between the regions' centres
//! at 200 km/ms with a path inflation of 1.5 (300 km within a region),
//! plus each end's access link (1 to 2 ms) and a per-message jitter of up
//! to 10 %, as testnet/scenarios/coordinates.toml's model. Datagrams may
//! be lost; streams (sync pages) are not. Partitions and flapping links
//! come from the fault actor.

use crate::SplitMix64;

/// (name, latitude, longitude) of the regions' centres.
pub const REGIONS: [(&str, f64, f64); 4] = [
    ("fra", 50.11, 8.68),
    ("vir", 38.90, -77.40),
    ("ore", 45.60, -121.20),
    ("sin", 1.35, 103.80),
];

const KM_PER_MS: f64 = 200.0;
const PATH_INFLATION: f64 = 1.5;
const SAME_REGION_KM: f64 = 300.0;
const EARTH_RADIUS_KM: f64 = 6_371.0;

pub struct Net {
    /// Each node's region and access latency (one way, µs).
    pub region: Vec<usize>,
    access_us: Vec<u64>,
    /// One-way latency between region centres, µs.
    between_us: [[u64; 4]; 4],
    /// The probability that a datagram is lost.
    pub loss: f64,
    /// Each node's side of a partition (all 0: none).
    pub side: Vec<u8>,
    /// Links that are down (either direction), as (low, high) node pairs.
    pub cut_links: Vec<(usize, usize)>,
}

fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

impl Net {
    pub fn new(nodes: usize, loss: f64, rng: &mut SplitMix64) -> Net {
        let region = (0..nodes)
            .map(|_| rng.below(REGIONS.len() as u64) as usize)
            .collect();
        let access_us = (0..nodes).map(|_| 1_000 + rng.below(1_000)).collect();
        let mut between_us = [[0; 4]; 4];
        for (i, a) in REGIONS.iter().enumerate() {
            for (j, b) in REGIONS.iter().enumerate() {
                let km = great_circle_km((a.1, a.2), (b.1, b.2)).max(SAME_REGION_KM);
                between_us[i][j] = (km / KM_PER_MS * PATH_INFLATION * 1_000.0) as u64;
            }
        }
        Net {
            region,
            access_us,
            between_us,
            loss,
            side: vec![0; nodes],
            cut_links: Vec::new(),
        }
    }

    /// The one-way latency without jitter, µs.
    pub fn base_us(&self, a: usize, b: usize) -> u64 {
        self.between_us[self.region[a]][self.region[b]] + self.access_us[a] + self.access_us[b]
    }

    /// The round trip without jitter, ms: the "perfect coordinates" a
    /// node's distance oracle returns in the simulation.
    pub fn rtt_ms(&self, a: usize, b: usize) -> u64 {
        2 * self.base_us(a, b) / 1_000
    }

    /// Whether `a` can reach `b` at all now (partitions, cut links).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.side[a] == self.side[b] && !self.cut_links.contains(&(a.min(b), a.max(b)))
    }

    /// When a message sent now from `a` reaches `b` (µs from now), or
    /// `None` if it is lost.
    pub fn delay_us(&self, a: usize, b: usize, stream: bool, rng: &mut SplitMix64) -> Option<u64> {
        if !self.connected(a, b) || (!stream && self.loss > 0.0 && rng.unit() < self.loss) {
            return None;
        }
        let base = self.base_us(a, b);
        Some(base + rng.below(base / 10 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_follow_geography() {
        let mut rng = SplitMix64(1);
        let net = Net::new(2, 0.0, &mut rng);
        let fra_sin = net.between_us[0][3];
        let fra_vir = net.between_us[0][1];
        // Frankfurt–Singapore is about 10,300 km: ~77 ms one way inflated.
        assert!((70_000..85_000).contains(&fra_sin), "{fra_sin}");
        assert!(fra_vir < fra_sin);
        assert_eq!(net.between_us[2][2], 2_250, "300 km within a region");
    }
}

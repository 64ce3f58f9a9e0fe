//! The Vivaldi update rule (issue 19, item 2): how a node moves its own
//! network coordinate ([`protocol::coordinate::NetCoordinate`]) from its
//! RTT samples, as Serf's `coordinate.Client` does (hashicorp/serf,
//! coordinate/client.go and config.go), with Serf's defaults.
//!
//! Pure logic, no I/O, like [`crate::placement`] beside it: the mesh feeds
//! it each ping's RTT with the peer's gossiped coordinate
//! (`mesh::node`, where `SmoothedRtt` observes the same ping), and
//! placement and `peers` read the coordinates. It lives outside `mesh`
//! because its tests (Serf's, and a geographic simulation) need no swarm.
//!
//! One update, as in Serf:
//! 1. the sample goes through a per-peer median filter of the last
//!    [`VivaldiConfig::latency_filter_size`] samples (a single slow ping is
//!    never seen);
//! 2. Vivaldi proper (Dabek et al.): the node's error estimate moves toward
//!    this sample's relative miss, weighted by how sure each side is; the
//!    node is pushed away from (or pulled toward) the peer by `cc × weight
//!    × (rtt − distance)`, which also grows or shrinks its height;
//! 3. the adjustment term (Lee et al.): half the mean of the last
//!    [`VivaldiConfig::adjustment_window`] (rtt − raw distance) misses;
//! 4. gravity (Ledlie et al.): a pull toward the origin that grows with the
//!    square of the distance, so that the whole system does not drift away.
//!
//! A peer's coordinate is checked ([`NetCoordinate::check`]) before it is
//! used; if our own ever fails the same check after an update, it is reset
//! to a fresh one (Serf resets on NaN; we also reset past the bounds).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use protocol::coordinate::{
    magnitude_s, CoordinateError, NetCoordinate, COORDINATE_DIMENSIONS, HEIGHT_MIN_S,
    MAX_RTT_SAMPLE_S, VIVALDI_ERROR_MAX, ZERO_THRESHOLD_S,
};
use protocol::fuzzing::SplitMix64;

/// Peers whose latency filter is kept: a node lists at most a few hundred
/// peers; past this, one filter is dropped for the new peer's (it refills
/// within [`VivaldiConfig::latency_filter_size`] pings).
pub const MAX_FILTERED_PEERS: usize = 1024;

/// The parameters of the update rule (Serf's `Config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VivaldiConfig {
    /// Dimensions of the Euclidean part: 8 on the wire; tests use fewer.
    pub dimensions: usize,
    /// A fresh node's error, and the most it grows to.
    pub error_max: f64,
    /// Most an observation moves the error estimate (Vivaldi's `ce`).
    pub ce: f64,
    /// Most an observation moves the coordinate (Vivaldi's `cc`).
    pub cc: f64,
    /// Samples the adjustment term averages (0: no adjustment).
    pub adjustment_window: usize,
    /// Smallest height, seconds.
    pub height_min_s: f64,
    /// Samples per peer the median filter keeps.
    pub latency_filter_size: usize,
    /// Gravity's scale, seconds: the pull is (distance / rho)².
    pub gravity_rho_s: f64,
}

impl Default for VivaldiConfig {
    /// Serf's `DefaultConfig`.
    fn default() -> Self {
        VivaldiConfig {
            dimensions: COORDINATE_DIMENSIONS,
            error_max: VIVALDI_ERROR_MAX,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min_s: HEIGHT_MIN_S,
            latency_filter_size: 3,
            gravity_rho_s: 150.0,
        }
    }
}

/// Why an observation was not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VivaldiError {
    #[error("the Vivaldi configuration has no dimensions")]
    NoDimensions,
    #[error("peer's coordinate is refused: {0}")]
    BadCoordinate(CoordinateError),
    #[error("peer's coordinate has {theirs} dimensions, this node's {ours}")]
    Incompatible { ours: usize, theirs: usize },
    #[error("RTT sample of {rtt_ms} ms is over the longest this learns from, {max_ms} ms")]
    RttOutOfRange { rtt_ms: u128, max_ms: u128 },
}

/// A node's coordinate and what updating it needs (Serf's `Client`),
/// keyed by peer `K` for the latency filter.
#[derive(Debug, Clone)]
pub struct Vivaldi<K> {
    config: VivaldiConfig,
    coord: NetCoordinate,
    /// Where gravity pulls toward: a fresh coordinate.
    origin: NetCoordinate,
    adjustment_index: usize,
    adjustment_samples: Vec<f64>,
    latency_filter: HashMap<K, VecDeque<f64>>,
    /// For a random direction when two nodes sit on the same point: the
    /// state of a `SplitMix64`.
    rng_state: u64,
    /// How often our own coordinate went bad and was reset.
    resets: u64,
}

impl<K: Hash + Eq + Clone> Vivaldi<K> {
    /// A client at the origin; `seed` picks the random directions (a
    /// node uses its own PeerId's, so that two nodes that start on the
    /// same point part different ways).
    pub fn new(config: VivaldiConfig, seed: u64) -> Result<Self, VivaldiError> {
        if config.dimensions == 0 {
            return Err(VivaldiError::NoDimensions);
        }
        let origin = fresh(&config);
        Ok(Vivaldi {
            config,
            coord: origin.clone(),
            origin,
            adjustment_index: 0,
            adjustment_samples: vec![0.0; config.adjustment_window],
            latency_filter: HashMap::new(),
            rng_state: seed,
            resets: 0,
        })
    }

    pub fn coordinate(&self) -> &NetCoordinate {
        &self.coord
    }

    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// The estimated RTT to a node at `other`, seconds.
    pub fn distance_s(&self, other: &NetCoordinate) -> Option<f64> {
        self.coord.distance_s(other)
    }

    /// Drops a peer's latency filter (it left).
    pub fn forget(&mut self, node: &K) {
        self.latency_filter.remove(node);
    }

    /// Learns from one RTT sample to `node`, whose coordinate is `other`
    /// (Serf's `Client.Update`). A refused sample leaves ours unchanged.
    pub fn update(
        &mut self,
        node: K,
        other: &NetCoordinate,
        rtt: Duration,
    ) -> Result<&NetCoordinate, VivaldiError> {
        other.check().map_err(VivaldiError::BadCoordinate)?;
        if !self.coord.is_compatible(other) {
            return Err(VivaldiError::Incompatible {
                ours: self.coord.vec_s.len(),
                theirs: other.vec_s.len(),
            });
        }
        if rtt.as_secs_f64() > MAX_RTT_SAMPLE_S {
            return Err(VivaldiError::RttOutOfRange {
                rtt_ms: rtt.as_millis(),
                max_ms: (MAX_RTT_SAMPLE_S * 1000.0) as u128,
            });
        }
        let rtt_s = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt_s);
        self.update_adjustment(other, rtt_s);
        self.update_gravity();
        if self.coord.check().is_err() {
            self.resets += 1;
            self.coord = fresh(&self.config);
        }
        Ok(&self.coord)
    }

    /// The median of the peer's last few samples, this one included.
    fn latency_filter(&mut self, node: K, rtt_s: f64) -> f64 {
        if !self.latency_filter.contains_key(&node)
            && self.latency_filter.len() >= MAX_FILTERED_PEERS
        {
            if let Some(k) = self.latency_filter.keys().next().cloned() {
                self.latency_filter.remove(&k);
            }
        }
        let samples = self.latency_filter.entry(node).or_default();
        samples.push_back(rtt_s);
        while samples.len() > self.config.latency_filter_size.max(1) {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &NetCoordinate, rtt_s: f64) {
        let c = self.config;
        let dist = self.coord.distance_s(other).unwrap_or(0.0);
        let rtt_s = rtt_s.max(ZERO_THRESHOLD_S);
        let wrongness = (dist - rtt_s).abs() / rtt_s;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD_S);
        let weight = self.coord.error / total_error;
        self.coord.error =
            (c.ce * weight * wrongness + self.coord.error * (1.0 - c.ce * weight)).min(c.error_max);
        let force = c.cc * weight * (rtt_s - dist);
        self.apply_force(force, &other.vec_s, other.height_s);
    }

    fn update_adjustment(&mut self, other: &NetCoordinate, rtt_s: f64) {
        let window = self.config.adjustment_window;
        if window == 0 {
            return;
        }
        // The raw distance: the adjustments are what this estimates.
        self.adjustment_samples[self.adjustment_index] = rtt_s - self.coord.raw_distance_s(other);
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment_s = sum / (2.0 * window as f64);
    }

    fn update_gravity(&mut self) {
        let dist = self.origin.distance_s(&self.coord).unwrap_or(0.0);
        let force = -(dist / self.config.gravity_rho_s).powi(2);
        let (vec, height) = (self.origin.vec_s.clone(), self.origin.height_s);
        self.apply_force(force, &vec, height);
    }

    /// Moves our coordinate by `force` seconds away from `other` (toward
    /// it when negative), and the height in proportion (Serf's
    /// `Coordinate.ApplyForce`).
    fn apply_force(&mut self, force: f64, other_vec: &[f64], other_height_s: f64) {
        let (unit, mag) = self.unit_vector_at(other_vec);
        for (v, u) in self.coord.vec_s.iter_mut().zip(&unit) {
            *v += u * force;
        }
        if mag > ZERO_THRESHOLD_S {
            let h = self.coord.height_s;
            self.coord.height_s =
                ((h + other_height_s) * force / mag + h).max(self.config.height_min_s);
        }
    }

    /// The unit vector pointing from `other` to us, and the distance; a
    /// random direction (and 0) when we are on the same point.
    fn unit_vector_at(&mut self, other: &[f64]) -> (Vec<f64>, f64) {
        let diff: Vec<f64> = self
            .coord
            .vec_s
            .iter()
            .zip(other)
            .map(|(a, b)| a - b)
            .collect();
        let mag = magnitude_s(diff.iter().copied());
        if mag > ZERO_THRESHOLD_S {
            return (diff.iter().map(|d| d / mag).collect(), mag);
        }
        let mut rng = SplitMix64(self.rng_state);
        let random: Vec<f64> = (0..diff.len())
            .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
            .collect();
        self.rng_state = rng.0;
        let m = magnitude_s(random.iter().copied());
        if m > ZERO_THRESHOLD_S {
            return (random.iter().map(|r| r / m).collect(), 0.0);
        }
        let mut first = vec![0.0; diff.len()];
        first[0] = 1.0;
        (first, 0.0)
    }
}

/// A coordinate at the origin with the largest error.
fn fresh(config: &VivaldiConfig) -> NetCoordinate {
    NetCoordinate {
        vec_s: vec![0.0; config.dimensions],
        error: config.error_max,
        adjustment_s: 0.0,
        height_s: config.height_min_s,
    }
}

#[cfg(test)]
#[path = "vivaldi_tests.rs"]
mod tests;

//! The lease's numbers. Clock rates are within `1 ± rho` of real time; a
//! holder that sent its request at local time s runs until
//! s + L(1 - rho) (plus at most one slice already started), a voter that
//! granted at g signs no takeover before g + L(1 + rho) + delta. With
//! delta >= slice (1 + rho) / (1 - rho) the holder has stopped, in real
//! time, before any voter of its majority lets a new owner in
//! (docs/protocol.md writes the inequality out).

use super::error::FailoverError;
use crate::migration::bugs::{active, Bug};

/// Parts per million, the unit of `rho`.
pub const PPM: u64 = 1_000_000;

/// The lease length L: a failover takes about L(1 + rho) + delta after the
/// host's last grant, plus a vote and the resume. 1.5 s keeps that under 2
/// s on a LAN (the goal; its gate is 5 s), while a host renews
/// [`LEASE_MS`] / [`RENEW_EVERY_MS`] (almost 4) times per lease, so one or
/// two lost rounds cost nothing.
pub const LEASE_MS: u64 = 1_500;

/// The bound on clock-rate error, rho, in parts per million: 1%. Board
/// crystals without NTP drift about 1e-4 (100 ppm); a hundred times that
/// covers a bad crystal and a clock slewed by a confused NTP at once.
pub const CLOCK_RATE_ERROR_PPM: u64 = 10_000;

/// The margin delta a voter adds: it must cover the longest slice a
/// holder runs past the moment it checked its lease ([`LONGEST_SLICE_MS`]),
/// stretched by the clocks' rates ([`LeaseParams::min_margin_ms`]), and
/// leaves the rest as slack for the scheduler.
pub const MARGIN_MS: u64 = 200;

/// How often the holder sends a new round: about a quarter of a lease, so
/// that two rounds in a row can be lost or slow (a LAN's RTT is far
/// below it) before the lease runs out.
pub const RENEW_EVERY_MS: u64 = 400;

/// The longest a vessel runs between two checks of its lease (one slice
/// of the runner, or the time from a check to releasing output). The
/// runner checks before every slice and before it releases output.
pub const LONGEST_SLICE_MS: u64 = 50;

/// Largest rho accepted: with rho near 1 the holder's share L(1 - rho)
/// vanishes; 10% is far beyond any working clock.
pub const MAX_CLOCK_RATE_ERROR_PPM: u64 = 100_000;

/// The lease's numbers, so that config (and the simulation) can change
/// them; [`LeaseParams::check`] keeps them safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseParams {
    pub lease_ms: u64,
    pub rho_ppm: u64,
    pub margin_ms: u64,
    pub renew_every_ms: u64,
    pub longest_slice_ms: u64,
}

impl Default for LeaseParams {
    fn default() -> LeaseParams {
        LeaseParams {
            lease_ms: LEASE_MS,
            rho_ppm: CLOCK_RATE_ERROR_PPM,
            margin_ms: MARGIN_MS,
            renew_every_ms: RENEW_EVERY_MS,
            longest_slice_ms: LONGEST_SLICE_MS,
        }
    }
}

impl LeaseParams {
    /// rho as the computations use it (0 under the deliberate bug).
    fn rho(&self) -> u64 {
        if active(Bug::IgnoreClockRate) {
            0
        } else {
            self.rho_ppm
        }
    }

    /// How long a holder may run after it sent a round that a majority
    /// granted, on its own clock: L(1 - rho), rounded down.
    pub fn holder_ms(&self) -> u64 {
        self.lease_ms * (PPM - self.rho()) / PPM
    }

    /// How long a voter grants no takeover after a grant, on its own
    /// clock: L(1 + rho) rounded up, plus delta. Also a restarted voter's
    /// wait before it signs a takeover (it forgot its grants).
    pub fn voter_hold_ms(&self) -> u64 {
        (self.lease_ms * (PPM + self.rho())).div_ceil(PPM) + self.margin_ms
    }

    /// The smallest delta that keeps two runners apart: the longest slice
    /// on the slowest holder clock, as the fastest voter clock measures
    /// it: slice (1 + rho) / (1 - rho), rounded up, plus 1 ms because a
    /// voter reads its clock in whole milliseconds (its grant's time may
    /// be up to 1 ms early; the holder's send time errs the safe way).
    pub fn min_margin_ms(longest_slice_ms: u64, rho_ppm: u64) -> u64 {
        (longest_slice_ms * (PPM + rho_ppm)).div_ceil(PPM - rho_ppm) + 1
    }

    /// How long a replica hears nothing of the host (no lease round)
    /// before it asks for a takeover: a voter's hold (no voter signs one
    /// sooner anyway), plus half a hold for each voter ranked before it
    /// (`rank`: its place in the voter set after the owner's, 0 for the
    /// next one), so that the voters that all lost the host at once do
    /// not all propose at once and split every vote (the simulation's
    /// seed 82: three of four voters left, each needed, proposing in
    /// turn for ten seconds). Failure detection decides only when to ask.
    pub fn suspect_after_ms(&self, rank: usize) -> u64 {
        self.voter_hold_ms() + rank as u64 * self.voter_hold_ms() / 2
    }

    /// A voter's rank for a takeover from `owner`: its distance after the
    /// owner in the voter set (0 for the next voter).
    pub fn takeover_rank<T: PartialEq>(voters: &[T], owner: &T, me: &T) -> usize {
        let n = voters.len();
        let o = voters.iter().position(|v| v == owner).unwrap_or(0);
        let m = voters.iter().position(|v| v == me).unwrap_or(0);
        (m + n - o - 1) % n
    }

    /// Refuses numbers that would let two leases overlap or a holder never
    /// renew in time.
    pub fn check(&self) -> Result<(), FailoverError> {
        let bad = |why: String| Err(FailoverError::Params(why));
        if self.rho_ppm > MAX_CLOCK_RATE_ERROR_PPM {
            return bad(format!(
                "rho {} ppm is above {MAX_CLOCK_RATE_ERROR_PPM} ppm",
                self.rho_ppm
            ));
        }
        let min = Self::min_margin_ms(self.longest_slice_ms, self.rho_ppm);
        if self.margin_ms < min {
            return bad(format!(
                "margin {} ms is below {min} ms, the longest slice ({} ms) at rho {} ppm",
                self.margin_ms, self.longest_slice_ms, self.rho_ppm
            ));
        }
        if self.renew_every_ms == 0 || self.renew_every_ms * 2 > self.holder_ms() {
            return bad(format!(
                "renewing every {} ms leaves no second try within a holder's {} ms",
                self.renew_every_ms,
                self.holder_ms()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_safe_and_fail_over_within_two_seconds() {
        let p = LeaseParams::default();
        assert_eq!(p.check(), Ok(()));
        assert_eq!(p.holder_ms(), 1_485);
        assert_eq!(p.voter_hold_ms(), 1_515 + 200);
        assert!(p.voter_hold_ms() < 2_000);
        assert_eq!(LeaseParams::min_margin_ms(50, 10_000), 53);
    }

    #[test]
    fn voters_after_the_owner_suspect_it_in_turn() {
        let p = LeaseParams::default();
        let voters = [10, 11, 12, 13];
        assert_eq!(LeaseParams::takeover_rank(&voters, &11, &12), 0);
        assert_eq!(LeaseParams::takeover_rank(&voters, &11, &10), 2);
        assert_eq!(LeaseParams::takeover_rank(&voters, &13, &10), 0);
        assert_eq!(p.suspect_after_ms(0), p.voter_hold_ms());
        assert_eq!(p.suspect_after_ms(2), 2 * p.voter_hold_ms());
    }

    #[test]
    fn unsafe_numbers_are_refused_with_the_reason() {
        let p = LeaseParams {
            margin_ms: 10,
            ..LeaseParams::default()
        };
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains("margin 10 ms is below 53 ms"), "{e}");
        let p = LeaseParams {
            renew_every_ms: 1_000,
            ..LeaseParams::default()
        };
        assert!(p.check().is_err());
        let p = LeaseParams {
            rho_ppm: 200_000,
            ..LeaseParams::default()
        };
        assert!(p.check().is_err());
    }

    /// The inequality itself, at the extremes of the clock rates: the
    /// holder's last moment (its lease plus a slice on the slowest clock)
    /// is before the earliest moment a voter on the fastest clock signs.
    #[test]
    fn the_holder_stops_before_any_voter_lets_a_new_owner_in() {
        for (lease_ms, rho_ppm) in [(1_500, 10_000), (300, 100_000), (5_000, 1)] {
            let p = LeaseParams {
                lease_ms,
                rho_ppm,
                margin_ms: LeaseParams::min_margin_ms(LONGEST_SLICE_MS, rho_ppm),
                renew_every_ms: lease_ms / 4,
                longest_slice_ms: LONGEST_SLICE_MS,
            };
            // Real time, in ppm-ms so that it stays exact.
            let holder_end = (p.holder_ms() + p.longest_slice_ms) * PPM * PPM / (PPM - rho_ppm);
            let voter_end = p.voter_hold_ms() * PPM * PPM / (PPM + rho_ppm);
            assert!(holder_end <= voter_end, "{p:?}: {holder_end} > {voter_end}");
        }
    }
}

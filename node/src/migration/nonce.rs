//! The nonce book: the nonces this node issued to sources for their next
//! offer. An offer is accepted only with a nonce this node issued to that
//! very peer, at most [`MIGRATION_NONCE_TTL_SECS`] ago, and only once, so a
//! recorded offer cannot be replayed. I/O-free: the caller brings the
//! random bytes and the time.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash as StdHash;
use std::time::{Duration, Instant};

use protocol::limits::{MAX_PENDING_NONCES, MIGRATION_NONCE_TTL_SECS};
use protocol::membership::Nonce;
use protocol::refusal::{Refusal, RefusalCode};

use super::bugs::{active, Bug};

/// The nonces issued and not yet redeemed, oldest first (at most
/// [`MAX_PENDING_NONCES`]: the oldest is forgotten first).
pub struct NonceBook<P> {
    issued: HashMap<Nonce, (P, Instant)>,
    order: VecDeque<Nonce>,
}

impl<P> Default for NonceBook<P> {
    fn default() -> Self {
        NonceBook {
            issued: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<P: Clone + Eq + StdHash> NonceBook<P> {
    /// Records `nonce` (fresh random bytes from the caller) as issued to
    /// `peer` at `now`.
    pub fn issue(&mut self, peer: P, nonce: Nonce, now: Instant) -> Nonce {
        while self.order.len() >= MAX_PENDING_NONCES {
            if let Some(old) = self.order.pop_front() {
                self.issued.remove(&old);
            }
        }
        self.issued.insert(nonce, (peer, now));
        self.order.push_back(nonce);
        nonce
    }

    /// Spends `nonce` for an offer from `peer` at `now`.
    pub fn redeem(&mut self, nonce: &Nonce, peer: &P, now: Instant) -> Result<(), Refusal> {
        let spent = match active(Bug::ReuseNonce) {
            true => self.issued.get(nonce).cloned(),
            false => self.issued.remove(nonce),
        };
        let Some((owner, at)) = spent else {
            return Err(Refusal::new(
                RefusalCode::Replayed,
                "replayed offer: its nonce is unknown or already used",
            ));
        };
        if !active(Bug::ReuseNonce) {
            self.order.retain(|n| n != nonce);
        }
        if &owner != peer {
            return Err(Refusal::new(
                RefusalCode::Replayed,
                "replayed offer: its nonce was issued to another node",
            ));
        }
        if now.saturating_duration_since(at) > Duration::from_secs(MIGRATION_NONCE_TTL_SECS) {
            return Err(Refusal::new(
                RefusalCode::NonceExpired,
                format!("stale offer: its nonce is older than {MIGRATION_NONCE_TTL_SECS} s"),
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_spent_once_by_the_peer_it_was_issued_to_within_its_ttl() {
        let mut book = NonceBook::default();
        let t0 = Instant::now();
        let n = book.issue(1u8, Nonce([1; 32]), t0);
        assert_eq!(
            book.redeem(&n, &2, t0).unwrap_err().code,
            RefusalCode::Replayed
        );
        let n = book.issue(1u8, Nonce([2; 32]), t0);
        assert!(book.redeem(&n, &1, t0).is_ok());
        assert_eq!(
            book.redeem(&n, &1, t0).unwrap_err().code,
            RefusalCode::Replayed
        );
        let n = book.issue(1u8, Nonce([3; 32]), t0);
        let late = t0 + Duration::from_secs(MIGRATION_NONCE_TTL_SECS + 1);
        assert_eq!(
            book.redeem(&n, &1, late).unwrap_err().code,
            RefusalCode::NonceExpired
        );
    }

    #[test]
    fn the_book_forgets_the_oldest_past_its_limit() {
        let mut book = NonceBook::default();
        let t0 = Instant::now();
        for i in 0..=MAX_PENDING_NONCES {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            book.issue(0u8, Nonce(b), t0);
        }
        assert_eq!(book.len(), MAX_PENDING_NONCES);
        assert_eq!(
            book.redeem(&Nonce([0; 32]), &0, t0).unwrap_err().code,
            RefusalCode::Replayed
        );
    }
}

//! How a relay shares its upstream link's interaction streams among its downstream
//! sessions: every forwarded stream holds one upstream stream for as long as it is open,
//! so without shares a few hundred idle connections could take them all and silence
//! chat for everyone else at the edge. Pure: a table of counts per session.

use stagecast_proto::address_limit::{CapReached, KeyedCounts};

use crate::router::SessionId;

/// Forwarded streams one downstream session may hold at most (a viewer page holds one).
pub const DEFAULT_PER_SESSION: usize = 8;
/// Forwarded streams a relay holds on its upstream link at most.
pub const DEFAULT_TOTAL: usize = 16_384;

/// Why a stream was not given an upstream stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareRefused {
    /// The session holds its fair share already.
    Session,
    /// The link holds all it may.
    Link,
}

#[derive(Debug)]
pub struct ForwardShares {
    per_session: usize,
    total: usize,
    held: KeyedCounts<SessionId>,
}

impl Default for ForwardShares {
    fn default() -> Self {
        Self::new(DEFAULT_PER_SESSION, DEFAULT_TOTAL)
    }
}

impl ForwardShares {
    pub fn new(per_session: usize, total: usize) -> Self {
        Self {
            per_session,
            total,
            held: KeyedCounts::default(),
        }
    }

    /// A session's share now: at most `per_session`, and less when the link is crowded,
    /// so that every session with streams could hold as many (never less than one).
    pub fn share(&self, session: SessionId) -> usize {
        let sessions = self.held.keys() + usize::from(self.held.held(&session) == 0);
        (self.total / sessions.max(1)).clamp(1, self.per_session)
    }

    /// Takes one upstream stream for `session`.
    pub fn acquire(&mut self, session: SessionId) -> Result<(), ShareRefused> {
        let share = self.share(session);
        self.held
            .acquire(session, share, self.total)
            .map_err(|cap| match cap {
                CapReached::PerKey => ShareRefused::Session,
                CapReached::Total => ShareRefused::Link,
            })
    }

    /// Gives back one upstream stream of `session`.
    pub fn release(&mut self, session: SessionId) {
        self.held.release(&session);
    }

    pub fn held(&self) -> usize {
        self.held.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_its_share_and_a_crowded_link_shrinks_shares() {
        let mut shares = ForwardShares::new(4, 10);
        for _ in 0..4 {
            assert_eq!(shares.acquire(1), Ok(()));
        }
        assert_eq!(shares.acquire(1), Err(ShareRefused::Session));
        // A second session gets the full share too; a third finds the link crowded (its
        // share is 10 / 3 = 3) and stops at the link's total.
        for _ in 0..4 {
            assert_eq!(shares.acquire(2), Ok(()));
        }
        assert_eq!(shares.acquire(2), Err(ShareRefused::Session));
        assert_eq!(shares.share(3), 3);
        assert_eq!(shares.acquire(3), Ok(()));
        assert_eq!(shares.acquire(3), Ok(()));
        assert_eq!(shares.acquire(3), Err(ShareRefused::Link));
        assert_eq!(shares.held(), 10);
        assert_eq!(shares.acquire(4), Err(ShareRefused::Link));
        shares.release(1);
        assert_eq!(shares.acquire(4), Ok(()));
        assert_eq!(shares.acquire(4), Err(ShareRefused::Link));
    }

    #[test]
    fn many_idle_sessions_cannot_take_every_stream() {
        // 500 sessions each trying to hold as many as they can, on a link of 1,000.
        let mut shares = ForwardShares::new(8, 1_000);
        for session in 0..500 {
            while shares.acquire(session).is_ok() {}
        }
        assert!(shares.held() <= 1_000);
        // The first sessions took their full share early, and the link filled: a new
        // viewer is refused until someone leaves, then gets in.
        assert_eq!(shares.acquire(9_999), Err(ShareRefused::Link));
        shares.release(0);
        assert_eq!(shares.acquire(9_999), Ok(()));
        // Releasing what was never held changes nothing.
        shares.release(123_456);
        assert_eq!(shares.held(), 1_000);
    }
}

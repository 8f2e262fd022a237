//! Sliding-window request limits per user (chat, reactions, any request), kept in memory
//! only: a restart forgets them.

use std::collections::{HashMap, VecDeque};

use stagecast_proto::interaction::Reason;

use super::rules::Rejection;

/// Sliding-window request limits per user, kept in memory only (a restart forgets them).
#[derive(Default)]
pub struct RateLimiter {
    windows: HashMap<(String, &'static str), VecDeque<u64>>,
}

/// (kind, how many, per how many ms).
pub const CHAT_LIMIT: (&str, usize, u64) = ("chat", 5, 10_000);
pub const REACT_LIMIT: (&str, usize, u64) = ("react", 20, 1_000);
pub const ANY_LIMIT: (&str, usize, u64) = ("any", 20, 1_000);

impl RateLimiter {
    /// Counts a request against `limit`; refuses it with the time until one is allowed.
    pub fn check(
        &mut self,
        user: &str,
        (kind, count, per_ms): (&'static str, usize, u64),
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let window = self.windows.entry((user.to_string(), kind)).or_default();
        while window.front().is_some_and(|&t| t + per_ms <= now_ms) {
            window.pop_front();
        }
        if window.len() >= count {
            let wait = window.front().map_or(per_ms, |&t| t + per_ms - now_ms);
            return Err(Rejection::new(
                Reason::RateLimited,
                format!(
                    "at most {count} {kind} requests per {} s",
                    per_ms as f64 / 1000.0
                ),
            )
            .retry_after(wait));
        }
        window.push_back(now_ms);
        Ok(())
    }

    /// Forgets windows with nothing in them any more, so memory follows active users.
    pub fn prune(&mut self, now_ms: u64) {
        self.windows
            .retain(|_, window| window.back().is_some_and(|&t| t + 60_000 > now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_slide() {
        let mut limiter = RateLimiter::default();
        for i in 0..5 {
            limiter.check("ann", CHAT_LIMIT, i).unwrap();
        }
        let refused = limiter.check("ann", CHAT_LIMIT, 100).unwrap_err();
        assert_eq!(
            (refused.reason, refused.retry_after_ms),
            (Reason::RateLimited, Some(9_900))
        );
        limiter.check("bob", CHAT_LIMIT, 100).unwrap();
        limiter.check("ann", CHAT_LIMIT, 10_000).unwrap();
        limiter.prune(200_000);
        assert!(limiter.windows.is_empty());
    }
}

//! Where credits come from. No payment provider is connected yet: [`DevCredits`] grants
//! development credits on request (for testing and demos), and a real provider would
//! implement [`CreditSource`] to check a purchase before the authority books it.
//!
//! Development credits are off unless the operator names the channels they are for
//! (`--dev-credits PREFIX`; the demo channel has them while the demo runs). They are
//! booked in an account of their own (`dev:<user>`), spendable only in those channels, so
//! credits anyone can ask for never show up as tips, goals or top tippers elsewhere.

use stagecast_proto::interaction::Reason;
use stagecast_proto::token::path_has_prefix;

use super::rules::{Actor, Rejection};

pub trait CreditSource: Send + 'static {
    /// Whether `actor` may be credited `amount` in channel `path`; the authority then
    /// books it exactly once.
    fn authorize(&self, actor: &Actor, path: &str, amount: u64) -> Result<(), Rejection>;

    /// The account `user` spends from and is credited to in channel `path`.
    fn account(&self, user: &str, path: &str) -> String {
        let _ = path;
        user.to_string()
    }
}

/// Development credits: granted to anyone in the channels under `prefixes` (none: off).
pub struct DevCredits {
    pub prefixes: Vec<String>,
}

impl DevCredits {
    fn covers(&self, path: &str) -> bool {
        self.prefixes.iter().any(|p| path_has_prefix(path, p))
    }
}

impl CreditSource for DevCredits {
    fn authorize(&self, _actor: &Actor, path: &str, _amount: u64) -> Result<(), Rejection> {
        if self.covers(path) {
            Ok(())
        } else {
            Err(Rejection::new(
                Reason::NotAuthorized,
                "no payment provider is connected and development credits are off here",
            ))
        }
    }

    fn account(&self, user: &str, path: &str) -> String {
        if self.covers(path) {
            format!("dev:{user}")
        } else {
            user.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interaction::rules::Role;

    #[test]
    fn dev_credits_are_off_by_default_and_kept_to_their_channels() {
        let ann = Actor {
            user: "ann".into(),
            name: "Ann".into(),
            role: Role::Viewer,
        };
        let off = DevCredits { prefixes: vec![] };
        assert!(off.authorize(&ann, "demo/live", 100).is_err());
        assert_eq!(off.account("ann", "demo/live"), "ann");
        let demo = DevCredits {
            prefixes: vec!["demo/".into()],
        };
        assert!(demo.authorize(&ann, "demo/live", 100).is_ok());
        assert!(demo.authorize(&ann, "live/alice", 100).is_err());
        assert_eq!(demo.account("ann", "demo/live"), "dev:ann");
        assert_eq!(demo.account("ann", "live/alice"), "ann");
    }
}

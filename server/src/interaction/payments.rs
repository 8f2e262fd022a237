//! Where credits come from. No payment provider is connected yet: [`DevCredits`] grants
//! development credits on request (for testing and demos), and a real provider would
//! implement [`CreditSource`] to check a purchase before the authority books it.

use stagecast_proto::interaction::Reason;

use super::rules::{Actor, Rejection};

pub trait CreditSource: Send + 'static {
    /// Whether `actor` may be credited `amount`; the authority then books it exactly once.
    fn authorize(&self, actor: &Actor, amount: u64) -> Result<(), Rejection>;
}

/// Development credits: granted to anyone while enabled, refused when off.
pub struct DevCredits {
    pub enabled: bool,
}

impl CreditSource for DevCredits {
    fn authorize(&self, _actor: &Actor, _amount: u64) -> Result<(), Rejection> {
        if self.enabled {
            Ok(())
        } else {
            Err(Rejection::new(
                Reason::NotAuthorized,
                "no payment provider is connected and development credits are off",
            ))
        }
    }
}

//! The client side of interaction (`docs/interaction.md`): request streams on the same
//! connection as the MoQ session, and the broadcast's timeline followed as a MoQ track.

pub mod requests;
pub mod timeline;

pub use requests::{new_key, Refused, RequestStream};
pub use timeline::follow_timeline;

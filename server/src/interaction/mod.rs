//! The origin's interaction authority (`docs/interaction.md`): request streams in, one
//! ordered, stored sequence of events per broadcast out, published as the broadcast's
//! `interaction` track.
//!
//! - [`rules`]: the pure state machine of one channel (what a request becomes);
//! - [`store`]: what must survive a crash (events, ledger, answers), SQLite behind a trait;
//! - [`snapshot`]: a channel's state stored behind its compacted history, and its restore;
//! - [`authority`]: sequencing: rules, then store, then publish;
//! - [`timeline`]: the track: a snapshot opening every group, then events;
//! - [`clock`]: the broadcast's media time, stamped on every event;
//! - [`payments`]: where credits come from (development credits until a provider exists);
//! - [`service`]: request streams (hello, token, requests) and the relay engine's hooks.

pub mod authority;
pub mod clock;
pub mod payments;
pub mod rate_limit;
pub mod rules;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod timeline;

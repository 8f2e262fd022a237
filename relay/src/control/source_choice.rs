//! Which peer a track is asked of, in the resolve order of `relay.rs`: the session that
//! published the namespace here, else the upstream link. Never the session the request
//! came from: answering a request from where it came would loop.

use crate::router::SessionId;

/// What the routes say of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// A broadcast published in this process (served from its own cache, no peer).
    Local,
    /// A peer session published it here.
    Peer(SessionId),
    /// Nobody published it here.
    Nowhere,
}

/// The peer to subscribe at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceChoice {
    Peer(SessionId),
    Upstream(SessionId),
}

/// The peer to ask for a track routed as `routed`, with the upstream link's session
/// `upstream` (if up), for a request from session `from`.
pub fn choose_source(
    routed: Routed,
    upstream: Option<SessionId>,
    from: SessionId,
) -> Option<SourceChoice> {
    match routed {
        Routed::Peer(session) if session != from => Some(SourceChoice::Peer(session)),
        Routed::Peer(_) | Routed::Local => None,
        Routed::Nowhere => upstream
            .filter(|&id| id != from)
            .map(SourceChoice::Upstream),
    }
}

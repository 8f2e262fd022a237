//! What a node plugs into the relay engine: the traits through which the origin's own
//! services (interaction, the tracks it adds to broadcasts) are reached. The engine calls
//! these; it never depends on the services themselves.

use std::future::Future;
use std::pin::Pin;

use moq_transport::coding::TrackNamespace;

use crate::cache::TrackCache;
use crate::demux::InteractionStream;

/// The origin's side: what serves an interaction stream whose header has been read.
pub trait InteractionAuthority: Send + Sync + 'static {
    fn serve(&self, stream: InteractionStream) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Tracks a node serves itself inside broadcasts that others publish.
pub trait ExtraTracks: Send + Sync + 'static {
    /// The cache of track `name` of `namespace`, if this node serves it.
    fn track(&self, namespace: &TrackNamespace, name: &str) -> Option<TrackCache>;
}

//! Which source serves a namespace: a peer session that published it (a publisher or a
//! downstream relay that forwarded its publisher's PUBLISH_NAMESPACE), or a broadcast
//! published inside this process. Longest prefix wins; among equals the newest
//! registration, so a publisher that reconnects takes over from its stale session. A
//! namespace live under one identity cannot be registered by another: that would be a
//! takeover of someone else's broadcast, not a reconnect.

use stagecast_proto::sync::lock_or_recover;
use std::sync::{Arc, Mutex};

use moq_transport::coding::TrackNamespace;
use moq_transport::session::Subscriber;
use tokio::sync::watch;

use crate::local::LocalBroadcast;

/// Identifies a peer session within this process, for loop prevention and logs.
pub type SessionId = u64;

#[derive(Clone)]
pub enum Source {
    /// A peer session; tracks are fetched from it with SUBSCRIBE.
    Session {
        session: SessionId,
        subscriber: Box<Subscriber>,
    },
    /// A broadcast published in this process.
    Local(LocalBroadcast),
}

impl Source {
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            Source::Session { session, .. } => Some(*session),
            Source::Local(_) => None,
        }
    }
}

/// Who registered a route, to tell a reconnect (same owner) from a takeover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nobody to compare: authorization is off, or the node's own upstream link.
    Anyone,
    /// A broadcast published inside this process (the demo channel, an ingest).
    Local,
    /// A session whose token names this subject.
    Subject(String),
}

impl Owner {
    /// Whether a route owned by `self` must not be replaced by one owned by `newcomer`.
    fn excludes(&self, newcomer: &Owner) -> bool {
        match (self, newcomer) {
            (Owner::Anyone, _) | (_, Owner::Anyone) => false,
            (a, b) => a != b,
        }
    }
}

/// A namespace is live here under another owner.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path} is already being published by someone else")]
pub struct RouteTaken {
    pub path: String,
}

struct Route {
    id: u64,
    namespace: TrackNamespace,
    source: Source,
    owner: Owner,
}

struct RouterState {
    routes: Vec<Route>,
    next_id: u64,
}

/// The namespace routing table. Cheap to clone; clones share the table.
#[derive(Clone)]
pub struct Router {
    state: Arc<Mutex<RouterState>>,
    /// The namespaces currently routed here, watched by upstream links that forward them.
    announced: watch::Sender<Vec<TrackNamespace>>,
    /// What this node's upstream answered when a namespace routed here was forwarded to
    /// it: `true` accepted, `false` refused (another identity is live there).
    upstream_verdicts: watch::Sender<std::collections::HashMap<TrackNamespace, bool>>,
}

impl Default for Router {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(RouterState {
                routes: Vec::new(),
                next_id: 0,
            })),
            announced: watch::Sender::new(Vec::new()),
            upstream_verdicts: watch::Sender::new(Default::default()),
        }
    }
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, RouterState> {
        lock_or_recover(&self.state)
    }

    /// Routes `namespace` to `source` until the returned guard is dropped, unless the
    /// namespace is live here under an owner other than `owner`.
    pub fn register(
        &self,
        namespace: TrackNamespace,
        source: Source,
        owner: Owner,
    ) -> Result<RouteGuard, RouteTaken> {
        let id = {
            let mut state = self.lock();
            let taken = state
                .routes
                .iter()
                .any(|r| r.namespace == namespace && r.owner.excludes(&owner));
            if taken {
                return Err(RouteTaken {
                    path: stagecast_proto::path::path_from_namespace(&namespace),
                });
            }
            let id = state.next_id;
            state.next_id += 1;
            state.routes.push(Route {
                id,
                namespace,
                source,
                owner,
            });
            id
        };
        self.publish_announced();
        Ok(RouteGuard {
            router: self.clone(),
            id,
        })
    }

    /// Whether exactly `namespace` (not only a prefix of it) is routed here.
    pub fn is_published(&self, namespace: &TrackNamespace) -> bool {
        self.lock().routes.iter().any(|r| &r.namespace == namespace)
    }

    fn unregister(&self, id: u64) {
        let gone = {
            let mut state = self.lock();
            let namespace = state
                .routes
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.namespace.clone());
            state.routes.retain(|r| r.id != id);
            namespace.filter(|ns| !state.routes.iter().any(|r| &r.namespace == ns))
        };
        if let Some(namespace) = gone {
            self.upstream_verdicts.send_modify(|v| {
                v.remove(&namespace);
            });
        }
        self.publish_announced();
    }

    /// Records the upstream's answer to a namespace forwarded to it.
    pub fn set_upstream_verdict(&self, namespace: &TrackNamespace, accepted: bool) {
        self.upstream_verdicts.send_modify(|v| {
            v.insert(namespace.clone(), accepted);
        });
    }

    /// The upstream's answer for `namespace`, waiting up to `wait` for it (`None`: no
    /// answer in time, as when the upstream link is down).
    pub async fn upstream_verdict(
        &self,
        namespace: &TrackNamespace,
        wait: std::time::Duration,
    ) -> Option<bool> {
        let mut verdicts = self.upstream_verdicts.subscribe();
        let answered = tokio::time::timeout(wait, verdicts.wait_for(|v| v.contains_key(namespace)))
            .await
            .ok()?
            .ok()?
            .get(namespace)
            .copied();
        answered
    }

    fn publish_announced(&self) {
        let mut namespaces: Vec<TrackNamespace> = Vec::new();
        for route in self.lock().routes.iter() {
            if !namespaces.contains(&route.namespace) {
                namespaces.push(route.namespace.clone());
            }
        }
        self.announced.send_replace(namespaces);
    }

    /// The source for a track in `namespace`, if any route covers it.
    pub fn route(&self, namespace: &TrackNamespace) -> Option<Source> {
        let state = self.lock();
        state
            .routes
            .iter()
            .filter(|r| is_prefix(&r.namespace, namespace))
            // max_by_key keeps the last of equal keys: the newest registration.
            .max_by_key(|r| (r.namespace.fields.len(), r.id))
            .map(|r| r.source.clone())
    }

    /// The routed namespaces, now and as they change.
    pub fn announced(&self) -> watch::Receiver<Vec<TrackNamespace>> {
        self.announced.subscribe()
    }

    /// The routed namespaces whose source is not `except` (a link never forwards a
    /// namespace back to the peer it came from).
    pub fn namespaces_not_from(&self, except: Option<SessionId>) -> Vec<TrackNamespace> {
        let mut namespaces: Vec<TrackNamespace> = Vec::new();
        for route in self.lock().routes.iter() {
            if except.is_some() && route.source.session_id() == except {
                continue;
            }
            if !namespaces.contains(&route.namespace) {
                namespaces.push(route.namespace.clone());
            }
        }
        namespaces
    }

    /// All routed namespaces as paths, for listings.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .lock()
            .routes
            .iter()
            .map(|r| stagecast_proto::path::path_from_namespace(&r.namespace))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

fn is_prefix(prefix: &TrackNamespace, namespace: &TrackNamespace) -> bool {
    prefix.fields.len() <= namespace.fields.len()
        && prefix
            .fields
            .iter()
            .zip(&namespace.fields)
            .all(|(a, b)| a == b)
}

/// Keeps a route in the table; dropping it removes the route.
pub struct RouteGuard {
    router: Router,
    id: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.router.unregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(path: &str) -> TrackNamespace {
        TrackNamespace::from_utf8_path(path)
    }

    #[test]
    fn longest_prefix_then_newest_wins_and_guards_unregister() {
        let router = Router::default();
        let a = router
            .register(
                ns("live"),
                Source::Local(LocalBroadcast::new(ns("live"))),
                Owner::Anyone,
            )
            .unwrap();
        let b = router
            .register(
                ns("live/alice"),
                Source::Local(LocalBroadcast::new(ns("live/alice"))),
                Owner::Anyone,
            )
            .unwrap();
        let pick = |path: &str| match router.route(&ns(path)) {
            Some(Source::Local(b)) => {
                Some(stagecast_proto::path::path_from_namespace(b.namespace()))
            }
            _ => None,
        };
        assert_eq!(pick("live/alice").as_deref(), Some("live/alice"));
        assert_eq!(pick("live/bob").as_deref(), Some("live"));
        assert_eq!(pick("other"), None);
        let newer = router
            .register(
                ns("live/alice"),
                Source::Local(LocalBroadcast::new(ns("live/alice/2"))),
                Owner::Anyone,
            )
            .unwrap();
        assert_eq!(pick("live/alice").as_deref(), Some("live/alice/2"));
        drop(newer);
        assert_eq!(pick("live/alice").as_deref(), Some("live/alice"));
        drop(b);
        assert_eq!(pick("live/alice").as_deref(), Some("live"));
        assert_eq!(router.paths(), vec!["live".to_string()]);
        drop(a);
        assert!(router.announced().borrow().is_empty());
    }

    #[test]
    fn another_owner_cannot_take_a_live_namespace() {
        let router = Router::default();
        let local = |path: &str| Source::Local(LocalBroadcast::new(ns(path)));
        let alice = |n: &str| Owner::Subject(format!("alice{n}"));
        let first = router
            .register(ns("live/alice"), local("first"), alice(""))
            .unwrap();
        // The same publisher reconnecting replaces its stale route.
        let again = router
            .register(ns("live/alice"), local("again"), alice(""))
            .unwrap();
        assert_eq!(
            router
                .register(ns("live/alice"), local("mallory"), alice("-not"))
                .err(),
            Some(RouteTaken {
                path: "live/alice".into()
            })
        );
        // A longer namespace under it is a different broadcast, not a takeover.
        assert!(router
            .register(ns("live/alice/extra"), local("x"), alice("-not"))
            .is_ok());
        let demo = router
            .register(ns("demo/live"), local("demo"), Owner::Local)
            .unwrap();
        assert!(router
            .register(ns("demo/live"), local("m"), alice(""))
            .is_err());
        assert!(router.is_published(&ns("demo/live")));
        assert!(!router.is_published(&ns("demo/live/random")));
        assert!(!router.is_published(&ns("demo")));
        drop((first, again, demo));
        // Once the owner's routes are gone, the path is free.
        assert!(router
            .register(ns("live/alice"), local("m"), alice("-not"))
            .is_ok());
    }
}

//! Which upstream a relay link tries next and how long it waits first: the configured
//! upstreams in order (failover, then round again), a GOAWAY's new URI once when it may
//! be followed, and exponential backoff with jitter that resets after a stable link.

use std::time::Duration;

use url::Url;

pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A link that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How a link attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// The upstream sent GOAWAY: move at once.
    GoingAway,
    /// Connect failed, or the session ended.
    Down,
}

/// What a GOAWAY's new URI means for the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoAwayTarget {
    /// Reconnect there next.
    Follow(Url),
    /// It names a host the operator did not configure: go on with the configured ones.
    Refused,
    /// It names no URI.
    None,
}

/// The order and pacing of one link's attempts.
#[derive(Clone, Debug)]
pub struct LinkPlan {
    urls: Vec<Url>,
    attempt: usize,
    backoff: Duration,
    /// Where the last upstream's GOAWAY said to go, tried once before the configured ones.
    moved_to: Option<Url>,
}

impl LinkPlan {
    pub fn new(urls: Vec<Url>) -> Self {
        Self {
            urls,
            attempt: 0,
            backoff: BACKOFF_MIN,
            moved_to: None,
        }
    }

    /// Whether any attempt was made before this one.
    pub fn is_retry(&self) -> bool {
        self.attempt > 0
    }

    /// The upstream to try now; `None` if none is configured.
    pub fn next_url(&mut self) -> Option<Url> {
        self.moved_to.take().or_else(|| {
            self.urls
                .get(self.attempt % self.urls.len().max(1))
                .cloned()
        })
    }

    /// The upstream at `current` sent GOAWAY naming `new_uri`.
    pub fn on_goaway(&mut self, current: &Url, new_uri: &str) -> GoAwayTarget {
        if new_uri.is_empty() {
            return GoAwayTarget::None;
        }
        match goaway_target(current, &self.urls, new_uri) {
            Some(url) => {
                self.moved_to = Some(url.clone());
                GoAwayTarget::Follow(url)
            }
            None => GoAwayTarget::Refused,
        }
    }

    /// The attempt ended after the link was up for `up_for`; `jitter` in [0.5, 1) scales
    /// the backoff so relays that lost the same upstream do not return in step. Returns
    /// how long to wait before the next attempt.
    pub fn on_end(&mut self, end: LinkEnd, up_for: Duration, jitter: f64) -> Duration {
        if up_for >= STABLE_AFTER {
            self.backoff = BACKOFF_MIN;
        }
        self.attempt += 1;
        let wait = match end {
            LinkEnd::GoingAway => Duration::ZERO,
            LinkEnd::Down => self.backoff.mul_f64(jitter.clamp(0.0, 1.0)),
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }
}

/// Where to reconnect after a GOAWAY from `current` naming `new_uri`: there if it is
/// the same host as `current` or one of the operator's `configured` upstreams, since the
/// link carries this node's token to it; `None` (go on with the configured upstreams)
/// otherwise, or when the GOAWAY names no URI.
pub fn goaway_target(current: &Url, configured: &[Url], new_uri: &str) -> Option<Url> {
    let target = Url::parse(new_uri).ok()?;
    if !matches!(target.scheme(), "moqt" | "https") {
        return None;
    }
    let same_host = target.host() == current.host();
    let configured = configured.iter().any(|u| {
        u.host() == target.host() && u.port_or_known_default() == target.port_or_known_default()
    });
    (same_host || configured).then_some(target)
}

//! Limits per client address: a token bucket per address for request rates, and a count
//! per address for things held open (connections), over [`KeyedCounts`], the count behind
//! every per-key cap. Pure: the caller passes the time in.
//!
//! IPv6 clients are keyed by their /64, the smallest block one subscriber is usually
//! given, so that one host cannot step around a limit by rotating through its own prefix.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Most addresses tracked at once; past it, new addresses are refused until old buckets
/// refill, so the table itself stays bounded under a flood of spoofed or rotated ones.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// The key a client address is limited under.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A rate: `burst` at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per client address.
#[derive(Debug)]
pub struct AddressBuckets {
    rate: Rate,
    buckets: HashMap<IpAddr, Bucket>,
    max_tracked: usize,
}

impl AddressBuckets {
    pub fn new(rate: Rate) -> Self {
        Self::with_capacity(rate, MAX_TRACKED_ADDRESSES)
    }

    pub fn with_capacity(rate: Rate, max_tracked: usize) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
            max_tracked,
        }
    }

    fn refill_per_sec(&self) -> f64 {
        f64::from(self.rate.per_minute) / 60.0
    }

    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.refill_per_sec()).min(f64::from(self.rate.burst))
    }

    /// Takes one token for `ip`; `Err(wait)` says how long until one is there.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = address_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_tracked {
            self.prune(now);
            if self.buckets.len() >= self.max_tracked {
                return Err(Duration::from_secs(1));
            }
        }
        let full = Bucket {
            tokens: f64::from(self.rate.burst),
            at: now,
        };
        let bucket = *self.buckets.get(&key).unwrap_or(&full);
        let tokens = self.level(&bucket, now);
        if tokens >= 1.0 {
            self.buckets.insert(
                key,
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
            return Ok(());
        }
        let rate = self.refill_per_sec();
        let wait = if rate > 0.0 {
            Duration::from_secs_f64(((1.0 - tokens) / rate).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        };
        Err(wait)
    }

    /// Forgets addresses whose buckets are full again (they would start full anyway).
    pub fn prune(&mut self, now: Instant) {
        let burst = f64::from(self.rate.burst);
        let refill = self.refill_per_sec();
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * refill < burst
        });
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// How many things each key (a client address, a session) holds, and in all: the count
/// behind every "at most N per X and M in total" limit.
#[derive(Debug)]
pub struct KeyedCounts<K> {
    held: HashMap<K, usize>,
    sum: usize,
}

impl<K> Default for KeyedCounts<K> {
    fn default() -> Self {
        Self {
            held: HashMap::new(),
            sum: 0,
        }
    }
}

/// Which cap refused a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapReached {
    /// The key's own (per address, per session).
    PerKey,
    Total,
}

impl<K: std::hash::Hash + Eq> KeyedCounts<K> {
    /// Counts one more for `key`, unless it holds `per_key` already or all hold `total`.
    pub fn acquire(&mut self, key: K, per_key: usize, total: usize) -> Result<(), CapReached> {
        if self.sum >= total {
            return Err(CapReached::Total);
        }
        if self.held(&key) >= per_key {
            return Err(CapReached::PerKey);
        }
        *self.held.entry(key).or_default() += 1;
        self.sum += 1;
        Ok(())
    }

    /// Counts one fewer for `key` (one that [`Self::acquire`] counted).
    pub fn release(&mut self, key: &K) {
        if let Some(held) = self.held.get_mut(key) {
            *held = held.saturating_sub(1);
            self.sum = self.sum.saturating_sub(1);
            if *held == 0 {
                self.held.remove(key);
            }
        }
    }

    pub fn held(&self, key: &K) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// How many keys hold something.
    pub fn keys(&self) -> usize {
        self.held.len()
    }

    pub fn total(&self) -> usize {
        self.sum
    }
}

/// How many things (connections, handshakes) each client address holds open, against a
/// per-address and a total cap.
#[derive(Debug)]
pub struct AddressCounts {
    per_address: usize,
    cap: usize,
    counts: KeyedCounts<IpAddr>,
}

impl AddressCounts {
    pub fn new(per_address: usize, total: usize) -> Self {
        Self {
            per_address,
            cap: total,
            counts: KeyedCounts::default(),
        }
    }

    /// Counts one more for `ip`, unless a cap is reached.
    pub fn acquire(&mut self, ip: IpAddr) -> Result<(), CapReached> {
        self.counts
            .acquire(address_key(ip), self.per_address, self.cap)
    }

    /// Counts one fewer for `ip` (one that [`Self::acquire`] counted).
    pub fn release(&mut self, ip: IpAddr) {
        self.counts.release(&address_key(ip));
    }

    pub fn total(&self) -> usize {
        self.counts.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_is_refused_then_refills() {
        let rate = Rate {
            burst: 3,
            per_minute: 60,
        };
        let mut buckets = AddressBuckets::new(rate);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(buckets.take(ip("192.0.2.1"), t0).is_ok());
        }
        let wait = buckets.take(ip("192.0.2.1"), t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        // Another address has its own bucket.
        assert!(buckets.take(ip("192.0.2.2"), t0).is_ok());
        // One token a second comes back.
        assert!(buckets
            .take(ip("192.0.2.1"), t0 + Duration::from_millis(1_050))
            .is_ok());
        assert!(buckets
            .take(ip("192.0.2.1"), t0 + Duration::from_millis(1_100))
            .is_err());
        buckets.prune(t0 + Duration::from_secs(10));
        assert_eq!(buckets.tracked(), 0);
    }

    #[test]
    fn ipv6_is_limited_by_its_64_and_mapped_v4_as_v4() {
        let mut buckets = AddressBuckets::new(Rate {
            burst: 1,
            per_minute: 1,
        });
        let t0 = Instant::now();
        assert!(buckets.take(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(buckets.take(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(buckets.take(ip("2001:db8:1:3::1"), t0).is_ok());
        assert!(buckets.take(ip("::ffff:192.0.2.7"), t0).is_ok());
        assert!(buckets.take(ip("192.0.2.7"), t0).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut buckets = AddressBuckets::with_capacity(
            Rate {
                burst: 1,
                per_minute: 1,
            },
            10,
        );
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(buckets.take(ip(&format!("192.0.2.{i}")), t0).is_ok());
        }
        assert!(buckets.take(ip("192.0.2.200"), t0).is_err());
        assert_eq!(buckets.tracked(), 10);
        // Once the old buckets have refilled they are forgotten and new ones fit.
        assert!(buckets
            .take(ip("192.0.2.200"), t0 + Duration::from_secs(61))
            .is_ok());
    }

    #[test]
    fn counts_cap_per_address_and_in_total() {
        let mut counts = AddressCounts::new(2, 3);
        assert!(counts.acquire(ip("192.0.2.1")).is_ok());
        assert!(counts.acquire(ip("192.0.2.1")).is_ok());
        assert_eq!(counts.acquire(ip("192.0.2.1")), Err(CapReached::PerKey));
        assert!(counts.acquire(ip("192.0.2.2")).is_ok());
        assert_eq!(counts.acquire(ip("192.0.2.3")), Err(CapReached::Total));
        counts.release(ip("192.0.2.1"));
        assert!(counts.acquire(ip("192.0.2.3")).is_ok());
        assert_eq!(counts.total(), 3);
        // Releasing what was never counted changes nothing.
        counts.release(ip("198.51.100.1"));
        assert_eq!(counts.total(), 3);
    }
}

//! Which new QUIC connections a server takes: a pure policy over counts per client
//! address, driven by the endpoint's accept loop (and by tests without sockets).
//!
//! - Address validation: while more than `retry_above` handshakes are in progress, a
//!   client that has not proven its address gets a Retry (RFC 9000 §8.1.2) first, so a
//!   flood of spoofed Initials costs the server a stateless packet each, not a handshake.
//! - Handshakes in progress are capped per address and in total.
//! - Connections (handshaking or established) are capped per address and in total; a
//!   slot is held from the first packet until the session ends.

use std::net::IpAddr;

use crate::address_limit::{AddressCounts, CapReached};

/// The limits, each with a flag on the node binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_handshakes: usize,
    pub max_handshakes_per_address: usize,
    /// Handshakes in progress above which unvalidated clients get a Retry first
    /// (0: always).
    pub retry_above: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_address: 100,
            max_handshakes: 256,
            max_handshakes_per_address: 64,
            retry_above: 32,
        }
    }
}

/// What to do with a new connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Take it: a connection slot and a handshake slot are now held for the address.
    Accept,
    /// Ask the client to prove its address first.
    Retry,
    /// Refuse it (CONNECTION_REFUSED); the name of the limit that refused.
    Refuse(&'static str),
}

/// The counts behind the decisions.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    handshakes: AddressCounts,
    connections: AddressCounts,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            handshakes: AddressCounts::new(
                limits.max_handshakes_per_address,
                limits.max_handshakes,
            ),
            connections: AddressCounts::new(
                limits.max_connections_per_address,
                limits.max_connections,
            ),
        }
    }

    /// Decides a new connection attempt from `ip`; `validated`: its address is proven
    /// (it answered a Retry); `may_retry`: a Retry can still be sent.
    pub fn incoming(&mut self, ip: IpAddr, validated: bool, may_retry: bool) -> Admit {
        if !validated && may_retry && self.handshakes.total() >= self.limits.retry_above {
            return Admit::Retry;
        }
        match self.connections.acquire(ip) {
            Ok(()) => {}
            Err(CapReached::PerKey) => return Admit::Refuse("quic_connections_per_address"),
            Err(CapReached::Total) => return Admit::Refuse("quic_connections"),
        }
        match self.handshakes.acquire(ip) {
            Ok(()) => Admit::Accept,
            Err(cap) => {
                self.connections.release(ip);
                Admit::Refuse(match cap {
                    CapReached::PerKey => "quic_handshakes_per_address",
                    CapReached::Total => "quic_handshakes",
                })
            }
        }
    }

    /// An accepted attempt's handshake ended; `established`: it became a connection,
    /// which keeps its slot until [`Self::closed`].
    pub fn handshake_done(&mut self, ip: IpAddr, established: bool) {
        self.handshakes.release(ip);
        if !established {
            self.connections.release(ip);
        }
    }

    /// An established connection ended.
    pub fn closed(&mut self, ip: IpAddr) {
        self.connections.release(ip);
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.total()
    }

    pub fn connections(&self) -> usize {
        self.connections.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 5,
            max_connections_per_address: 3,
            max_handshakes: 4,
            max_handshakes_per_address: 2,
            retry_above: 2,
        }
    }

    #[test]
    fn handshakes_then_connections_are_capped_per_address() {
        let mut a = Admission::new(limits());
        let one = ip("192.0.2.1");
        assert_eq!(a.incoming(one, true, false), Admit::Accept);
        assert_eq!(a.incoming(one, true, false), Admit::Accept);
        assert_eq!(
            a.incoming(one, true, false),
            Admit::Refuse("quic_handshakes_per_address")
        );
        // The refused attempt holds nothing.
        assert_eq!((a.handshakes(), a.connections()), (2, 2));
        a.handshake_done(one, true);
        a.handshake_done(one, true);
        assert_eq!(a.incoming(one, true, false), Admit::Accept);
        a.handshake_done(one, true);
        assert_eq!(
            a.incoming(one, true, false),
            Admit::Refuse("quic_connections_per_address")
        );
        // Another address is still served, up to the total.
        let two = ip("192.0.2.2");
        assert_eq!(a.incoming(two, true, false), Admit::Accept);
        assert_eq!(a.incoming(two, true, false), Admit::Accept);
        assert_eq!(
            a.incoming(ip("192.0.2.3"), true, false),
            Admit::Refuse("quic_connections")
        );
        a.handshake_done(two, false);
        a.closed(one);
        assert_eq!(a.incoming(ip("192.0.2.3"), true, false), Admit::Accept);
    }

    #[test]
    fn unvalidated_clients_get_a_retry_under_handshake_load() {
        let mut a = Admission::new(limits());
        assert_eq!(a.incoming(ip("192.0.2.1"), false, true), Admit::Accept);
        assert_eq!(a.incoming(ip("192.0.2.2"), false, true), Admit::Accept);
        // Two in progress: the next unvalidated one must prove its address.
        assert_eq!(a.incoming(ip("192.0.2.3"), false, true), Admit::Retry);
        assert_eq!(a.handshakes(), 2);
        // Having answered the Retry, it is taken.
        assert_eq!(a.incoming(ip("192.0.2.3"), true, false), Admit::Accept);
        // With retry_above 0 every unvalidated client is asked.
        let mut always = Admission::new(AdmissionLimits {
            retry_above: 0,
            ..limits()
        });
        assert_eq!(always.incoming(ip("192.0.2.1"), false, true), Admit::Retry);
    }
}

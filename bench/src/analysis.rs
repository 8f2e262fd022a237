//! Turns what the publisher sent and what each subscriber received into the delivery
//! figures of one run: pure functions over the logs, so they are tested without a relay.
//!
//! Only objects *sent* inside the measured window count, whenever they arrived: objects
//! from before it (warm-up, or the cached group a subscriber joins on) are left out, and an
//! object sent in the window that never arrived (by the end of the grace period) is missing.

use serde::Serialize;

use crate::subscriber::ReceiveLog;

/// The measured window, in ns since the Unix epoch: `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn contains(&self, ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&ns)
    }
}

/// Delivery figures over all subscribers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    /// Objects the publisher sent in the window.
    pub objects_published: u64,
    /// Objects sent in the window times subscribers that were subscribed.
    pub objects_expected: u64,
    /// Distinct objects sent in the window that subscribers received, summed.
    pub objects_delivered: u64,
    /// Expected objects never received (by the end of the grace period).
    pub objects_missing: u64,
    /// Received objects that arrived later than the lateness threshold.
    pub objects_late: u64,
    /// Objects received more than once (should be 0).
    pub objects_duplicate: u64,
    /// Objects whose size was not the size sent (should be 0).
    pub objects_wrong_size: u64,
    /// Groups that ended in a stream error rather than cleanly.
    pub groups_cut: u64,
    /// Groups in which an object id was skipped.
    pub groups_with_gaps: u64,
    /// Subscriptions that ended before the benchmark stopped them.
    pub subscriptions_ended_early: u64,
    /// End-to-end latency of the received objects, milliseconds.
    pub latency_ms: Percentiles,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `values` (sorted in place), scaled by `scale`.
    pub fn of(values: &mut [u64], scale: f64) -> Self {
        values.sort_unstable();
        let at = |q: f64| -> f64 {
            if values.is_empty() {
                return 0.0;
            }
            let index = ((values.len() as f64 * q) as usize).min(values.len() - 1);
            values[index] as f64 * scale
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Figures for one run from the publisher's send times and each subscriber's log.
pub fn delivery(window: Window, sent_ns: &[u64], logs: &[ReceiveLog], late_ns: u64) -> Delivery {
    let published = sent_ns.iter().filter(|&&t| window.contains(t)).count() as u64;
    let mut out = Delivery {
        objects_published: published,
        objects_expected: published * logs.len() as u64,
        ..Default::default()
    };
    let mut latencies = Vec::new();
    for log in logs {
        let mut received: Vec<(u64, u64)> = log
            .objects
            .iter()
            .copied()
            .filter(|(sent, _)| window.contains(*sent))
            .collect();
        received.sort_unstable();
        let before = received.len() as u64;
        received.dedup_by_key(|(sent, _)| *sent);
        out.objects_duplicate += before - received.len() as u64;
        out.objects_delivered += received.len() as u64;
        out.objects_missing += published.saturating_sub(received.len() as u64);
        for (sent, got) in received {
            let latency = got.saturating_sub(sent);
            if latency > late_ns {
                out.objects_late += 1;
            }
            latencies.push(latency);
        }
        out.objects_wrong_size += log.wrong_size;
        out.groups_cut += log.groups_cut;
        out.groups_with_gaps += log.groups_with_gaps;
        out.subscriptions_ended_early += u64::from(log.ended.is_some());
    }
    out.latency_ms = Percentiles::of(&mut latencies, 1e-6);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn counts_missing_late_and_duplicates_within_the_window() {
        let window = Window {
            start_ns: 1000 * MS,
            end_ns: 2000 * MS,
        };
        // Three objects before the window, ten in it, one after.
        let sent: Vec<u64> = (0..14).map(|i| (700 + i * 100) * MS).collect();
        let in_window: Vec<u64> = sent[3..13].to_vec();
        let whole = ReceiveLog {
            objects: sent.iter().map(|&t| (t, t + 10 * MS)).collect(),
            ..Default::default()
        };
        let mut partial = ReceiveLog {
            objects: in_window[..8].iter().map(|&t| (t, t + 20 * MS)).collect(),
            groups_cut: 1,
            ..Default::default()
        };
        partial.objects.push((in_window[0], in_window[0] + 30 * MS));
        partial.objects[1].1 += 600 * MS;

        let d = delivery(window, &sent, &[whole, partial], 500 * MS);
        assert_eq!(d.objects_published, 10);
        assert_eq!(d.objects_expected, 20);
        assert_eq!(d.objects_delivered, 18);
        assert_eq!(d.objects_missing, 2);
        assert_eq!(d.objects_duplicate, 1);
        assert_eq!(d.objects_late, 1);
        assert_eq!(d.groups_cut, 1);
        assert_eq!(d.latency_ms.max, 620.0);
    }

    #[test]
    fn percentiles_of_nothing_are_zero() {
        let p = Percentiles::of(&mut [], 1.0);
        assert_eq!(p.p99, 0.0);
    }
}

//! Helpers shared by the fuzz targets: running an always-ready future to completion, and
//! cutting one fuzz input into the chunks a network read would deliver.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls `future` until it is ready. Only for futures over in-memory readers (`&[u8]`),
/// which never return `Pending`; gives up (returning `None`) after many pending polls
/// rather than spin forever, so a future that does wait is a finding, not a hang.
pub fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Cuts `data` into chunks whose sizes come from `sizes` (cycled; a 0 means one byte),
/// as a stream read in irregular pieces would arrive.
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0);
        let size = usize::from(size).max(1).min(rest.len());
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

/// Splits a fuzz input at its first `sep` byte: `(before, after)`, or `(data, &[])`.
pub fn split_once(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

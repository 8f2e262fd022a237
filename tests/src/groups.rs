//! Which groups (GOPs) of a published clip a subscriber received: whole, cut short, or
//! not at all, and whether anything it wrote is not a clean run of the input's samples.
//! A slow viewer is designed to lose whole old groups, never to get corrupt ones.

use std::path::Path;
use std::process::Command;

use crate::media::frame_hashes;

/// The fate of each video group of the input at one subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupReport {
    /// Video samples per input group, in order.
    pub group_sizes: Vec<usize>,
    /// Samples received per input group (0: the group was skipped).
    pub received: Vec<usize>,
    /// Received samples that are not in the input, or out of order, or that leave a hole
    /// inside their group (a sample missing before one received): corruption.
    pub faults: Vec<String>,
}

impl GroupReport {
    pub fn complete(&self) -> usize {
        self.count(|got, size| got == size)
    }

    /// Groups that start at their keyframe and stop before their end.
    pub fn cut_short(&self) -> usize {
        self.count(|got, size| got > 0 && got < size)
    }

    pub fn skipped(&self) -> usize {
        self.count(|got, _| got == 0)
    }

    pub fn samples(&self) -> usize {
        self.received.iter().sum()
    }

    pub fn total_samples(&self) -> usize {
        self.group_sizes.iter().sum()
    }

    /// Index of the last group of which anything arrived.
    pub fn last_received(&self) -> Option<usize> {
        self.received.iter().rposition(|n| *n > 0)
    }

    fn count(&self, f: impl Fn(usize, usize) -> bool) -> usize {
        self.received
            .iter()
            .zip(&self.group_sizes)
            .filter(|(got, size)| f(**got, **size))
            .count()
    }

    /// One line per group: `#index received/size`, for a test's log.
    pub fn summary(&self) -> String {
        let groups: Vec<String> = self
            .received
            .iter()
            .zip(&self.group_sizes)
            .enumerate()
            .map(|(i, (got, size))| format!("#{i} {got}/{size}"))
            .collect();
        format!(
            "{} of {} samples; groups: {} complete, {} cut short, {} skipped [{}]",
            self.samples(),
            self.total_samples(),
            self.complete(),
            self.cut_short(),
            self.skipped(),
            groups.join(", ")
        )
    }
}

/// Keyframe flags of a file's video packets, in order (ffprobe).
pub fn video_keyframes(path: &Path) -> Vec<bool> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|flags| flags.starts_with('K'))
        .collect()
}

/// Compares the video of `output` with the groups of `input` (whose video packets must
/// all differ, as a test pattern's do).
pub fn group_report(input: &Path, output: &Path) -> GroupReport {
    let hashes = frame_hashes(input).remove("video").unwrap_or_default();
    let keys = video_keyframes(input);
    assert_eq!(
        hashes.len(),
        keys.len(),
        "framemd5 and ffprobe disagree on {}",
        input.display()
    );
    let got = frame_hashes(output).remove("video").unwrap_or_default();
    report(&hashes, &keys, &got)
}

fn report(hashes: &[String], keys: &[bool], got: &[String]) -> GroupReport {
    // The group of each input sample, and its place in the group.
    let mut group_of = Vec::with_capacity(hashes.len());
    let mut group_sizes: Vec<usize> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if *key || i == 0 {
            group_sizes.push(0);
        }
        let g = group_sizes.len() - 1;
        group_of.push((g, group_sizes[g]));
        group_sizes[g] += 1;
    }
    let index: std::collections::HashMap<&str, usize> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    assert_eq!(
        index.len(),
        hashes.len(),
        "the input repeats a video packet"
    );
    let mut received = vec![0usize; group_sizes.len()];
    let mut faults = Vec::new();
    let mut last: Option<usize> = None;
    for (n, hash) in got.iter().enumerate() {
        let Some(&i) = index.get(hash.as_str()) else {
            faults.push(format!("output sample {n} is not in the input"));
            continue;
        };
        if last.is_some_and(|l| i <= l) {
            faults.push(format!("output sample {n} (input {i}) is out of order"));
            continue;
        }
        last = Some(i);
        let (g, place) = group_of[i];
        if place != received[g] {
            faults.push(format!(
                "output sample {n}: sample {place} of group {g} follows {} of its samples",
                received[g]
            ));
        }
        received[g] += 1;
    }
    GroupReport {
        group_sizes,
        received,
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn groups_are_whole_cut_short_or_skipped() {
        let input = s(&["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"]);
        let keys = [true, false, false, true, false, false, true, false, false];
        let r = report(&input, &keys, &s(&["a0", "a1", "c0", "c1", "c2"]));
        assert!(r.faults.is_empty(), "{:?}", r.faults);
        assert_eq!((r.complete(), r.cut_short(), r.skipped()), (1, 1, 1));
        assert_eq!(r.last_received(), Some(2));
        assert_eq!(r.samples(), 5);
    }

    #[test]
    fn holes_strangers_and_disorder_are_faults() {
        let input = s(&["a0", "a1", "a2", "b0", "b1"]);
        let keys = [true, false, false, true, false];
        // A hole in group a, a foreign sample, and b0 after b1.
        let r = report(&input, &keys, &s(&["a0", "a2", "zz", "b1", "b0"]));
        assert_eq!(r.faults.len(), 4, "{:?}", r.faults);
    }
}

//! Which received objects go into the output: per track, each object must follow the last
//! one written (the next object of its group, or object 0 of a later group).
//!
//! When the command moves to another session (after a GOAWAY), the old and the new session
//! may both deliver the group in progress; this keeps the output free of repeats and gaps
//! inside a group, whichever session an object came from.

use std::collections::HashMap;

/// The last (group, object) written per track.
#[derive(Default)]
pub struct Continuity {
    written: HashMap<String, (u64, u64)>,
}

impl Continuity {
    /// Whether `(group, object)` of `track` continues its output; if so it counts as
    /// written.
    pub fn accept(&mut self, track: &str, group: u64, object: u64) -> bool {
        let follows = match self.written.get(track) {
            None => object == 0,
            Some(&(last_group, last_object)) => {
                (group == last_group && object == last_object + 1)
                    || (group > last_group && object == 0)
            }
        };
        if follows {
            self.written.insert(track.to_string(), (group, object));
        }
        follows
    }
}

#[cfg(test)]
mod tests {
    use super::Continuity;

    #[test]
    fn a_second_session_repeating_the_group_in_progress_adds_only_what_is_new() {
        let mut c = Continuity::default();
        assert!(c.accept("video", 7, 0));
        assert!(c.accept("video", 7, 1));
        // The new session starts the same group over: its first two objects are repeats.
        assert!(!c.accept("video", 7, 0));
        assert!(!c.accept("video", 7, 1));
        assert!(c.accept("video", 7, 2));
        // The old session's late copy of an object already written is dropped.
        assert!(!c.accept("video", 7, 2));
        assert!(c.accept("video", 8, 0));
        // Tracks are independent.
        assert!(c.accept("audio", 3, 0));
    }

    #[test]
    fn output_starts_and_resumes_only_at_group_starts() {
        let mut c = Continuity::default();
        assert!(
            !c.accept("video", 7, 3),
            "a group joined midway is not a start"
        );
        assert!(c.accept("video", 8, 0));
        assert!(!c.accept("video", 8, 2), "a gap inside a group");
        assert!(c.accept("video", 9, 0));
        assert!(!c.accept("video", 6, 0), "an older group");
    }
}

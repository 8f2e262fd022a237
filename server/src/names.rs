//! Display names people see beside chat lines and tips: normalized so that two names that
//! look the same are the same (Unicode NFKC, invisible and bidirectional controls
//! removed, whitespace collapsed), and guarded so that nobody but a creator can appear
//! under a creator's name.

use stagecast_proto::sync::lock_or_recover;
use std::collections::HashSet;
use std::sync::Mutex;

use unicode_normalization::UnicodeNormalization;

/// The longest display name, in characters after normalization.
pub const MAX_NAME_CHARS: usize = 32;
/// Creator names remembered; past this the oldest stay and new ones are not added (the
/// set only grows with creators who went live, which tokens bound).
const MAX_RESERVED: usize = 10_000;
/// Names nobody may take as a guest, whatever the channel.
const ALWAYS_RESERVED: &[&str] = &["admin", "creator", "moderator", "stagecast", "system"];

/// Why a display name was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a display name is 1 to {MAX_NAME_CHARS} visible characters")]
    Length,
    #[error("that name belongs to a creator or to this site; choose another")]
    Reserved,
}

/// Whether `c` changes how text around it is shown without being seen itself: format
/// characters (zero-width spaces and joiners, bidirectional embeddings, overrides and
/// isolates, the byte order mark, tags) and the blank "filler" letters that render as
/// nothing. Unicode general category Cf, plus the fillers, listed by hand.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    ) || c.is_control()
}

/// A display name as it will be shown: NFKC, invisible and control characters removed,
/// runs of whitespace made one space, trimmed, and 1 to [`MAX_NAME_CHARS`] characters.
pub fn normalize_name(raw: &str) -> Result<String, NameError> {
    let mut name = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.nfkc().filter(|c| !is_invisible(*c)) {
        if c.is_whitespace() {
            space = !name.is_empty();
            continue;
        }
        if space {
            name.push(' ');
            space = false;
        }
        name.push(c);
    }
    let chars = name.chars().count();
    if (1..=MAX_NAME_CHARS).contains(&chars) {
        Ok(name)
    } else {
        Err(NameError::Length)
    }
}

/// What two names must differ in to be told apart: letters and digits only, lowercased
/// (`Alice ★`, `alice` and `A.L.I.C.E` fold alike).
fn fold(name: &str) -> String {
    name.nfkc()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Names that only their owner may use: creators' names as their tokens give them, and
/// a few the site keeps.
#[derive(Default)]
pub struct ReservedNames {
    folded: Mutex<HashSet<String>>,
}

impl ReservedNames {
    /// Remembers a creator's display name.
    pub fn reserve(&self, name: &str) {
        let folded = fold(name);
        if folded.is_empty() {
            return;
        }
        let mut set = lock_or_recover(&self.folded);
        if set.len() < MAX_RESERVED {
            set.insert(folded);
        }
    }

    /// Whether `name` would pass for a reserved one.
    pub fn is_reserved(&self, name: &str) -> bool {
        let folded = fold(name);
        if folded.is_empty() {
            return false;
        }
        ALWAYS_RESERVED.contains(&folded.as_str())
            || lock_or_recover(&self.folded).contains(&folded)
    }

    /// `name` normalized, refused if it passes for a reserved name.
    pub fn guest_name(&self, raw: &str) -> Result<String, NameError> {
        let name = normalize_name(raw)?;
        if self.is_reserved(&name) {
            return Err(NameError::Reserved);
        }
        Ok(name)
    }

    /// The name a non-creator is shown under: their own, or, when it passes for a
    /// reserved one (a token issued before the creator went live), marked as not theirs.
    pub fn viewer_name(&self, name: String) -> String {
        if self.is_reserved(&name) {
            format!("{name} (viewer)")
        } else {
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_bounded() {
        assert_eq!(normalize_name("  Ann "), Ok("Ann".into()));
        assert_eq!(normalize_name("   "), Err(NameError::Length));
        assert_eq!(normalize_name(&"x".repeat(33)), Err(NameError::Length));
        assert_eq!(normalize_name("a\u{7}b"), Ok("ab".into()));
        assert_eq!(normalize_name("<b>Zoë</b>"), Ok("<b>Zoë</b>".into()));
        // Compatibility forms fold to the plain letters (NFKC): fullwidth, ligatures.
        assert_eq!(normalize_name("Ａｌｉｃｅ"), Ok("Alice".into()));
        assert_eq!(normalize_name("ﬁsh"), Ok("fish".into()));
        // Zero-width and bidirectional controls are dropped; so are fillers.
        assert_eq!(normalize_name("Al\u{200B}ice"), Ok("Alice".into()));
        assert_eq!(normalize_name("\u{202E}ecila"), Ok("ecila".into()));
        assert_eq!(normalize_name("a\u{2066}b\u{2069}"), Ok("ab".into()));
        assert_eq!(normalize_name("\u{3164}\u{200D}"), Err(NameError::Length));
        assert_eq!(normalize_name("a \t\n b"), Ok("a b".into()));
    }

    #[test]
    fn nobody_but_the_creator_passes_for_the_creator() {
        let names = ReservedNames::default();
        names.reserve("Alice");
        for lookalike in [
            "alice",
            "ALICE ★",
            "A.l.i.c.e",
            "Ａｌｉｃｅ",
            "Al\u{200B}ice",
        ] {
            assert_eq!(
                names.guest_name(lookalike),
                Err(NameError::Reserved),
                "{lookalike}"
            );
        }
        assert_eq!(names.guest_name("Alicia"), Ok("Alicia".into()));
        assert_eq!(names.guest_name("Moderator"), Err(NameError::Reserved));
        assert_eq!(names.viewer_name("alice".into()), "alice (viewer)");
        assert_eq!(names.viewer_name("Bob".into()), "Bob");
        // A name of symbols only folds to nothing and reserves nothing.
        names.reserve("★★");
        assert_eq!(names.guest_name("☆"), Ok("☆".into()));
    }
}

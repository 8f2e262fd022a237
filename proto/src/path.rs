//! Broadcast paths: the names people type (`live/alice`) and the MoQ track namespace
//! tuples they map to (`["live", "alice"]`), one tuple field per path segment.

use moq_transport::coding::TrackNamespace;

/// A broadcast path could not be used as a namespace.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("broadcast path is empty")]
    Empty,
    #[error("broadcast path {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("broadcast path has {0} segments; at most 32 are allowed (draft-18 §2.4.1)")]
    TooManySegments(usize),
    #[error("broadcast path is {0} bytes; at most 4096 are allowed")]
    TooLong(usize),
}

/// Most namespace tuple fields a draft-18 peer accepts.
const MAX_SEGMENTS: usize = 32;
/// Namespace plus track name are bounded to 4096 bytes by draft-18.
const MAX_PATH_BYTES: usize = 4096;

/// Turns `live/alice` (leading and trailing slashes ignored) into a track namespace.
pub fn namespace_from_path(path: &str) -> Result<TrackNamespace, PathError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(PathError::Empty);
    }
    if trimmed.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(trimmed.len()));
    }
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(PathError::TooManySegments(segments.len()));
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Err(PathError::EmptySegment(path.to_string()));
    }
    Ok(TrackNamespace::from_utf8_path(trimmed))
}

/// The path form of a namespace, for logs, metrics and URLs.
pub fn path_from_namespace(namespace: &TrackNamespace) -> String {
    namespace.to_utf8_path().trim_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_paths() {
        let ns = namespace_from_path("/live/alice/").unwrap();
        assert_eq!(ns.fields.len(), 2);
        assert_eq!(path_from_namespace(&ns), "live/alice");
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(namespace_from_path(""), Err(PathError::Empty));
        assert_eq!(namespace_from_path("///"), Err(PathError::Empty));
        assert!(matches!(
            namespace_from_path("a//b"),
            Err(PathError::EmptySegment(_))
        ));
        let long = vec!["x"; 40].join("/");
        assert_eq!(
            namespace_from_path(&long),
            Err(PathError::TooManySegments(40))
        );
    }
}

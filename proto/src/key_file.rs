//! Private files: the data directory and the secret keys kept in it (the token key, the
//! development certificate's key) and given by path (`--tls-key`, `--auth-key-file`).
//!
//! - A secret is written under a temporary name that is created with mode 0600 in the same
//!   call that creates it (`create_new` plus `mode`), synced, then linked or renamed into
//!   place. It is never readable by anyone else, not even for the instant between a write
//!   and a chmod, and a crash leaves either the old file or the whole new one.
//! - A data directory that is made here is made 0700.
//! - A key file that users other than its owner can read or change is refused, with an
//!   error naming the file and the `chmod` that fixes it.
//!
//! On other platforms than Unix there are no mode bits: files are written the same way
//! (temporary name, then into place) and no check is made.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The mode bits of a key file that make it refused: any access by group or others.
pub const NOT_PRIVATE_BITS: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "the key file {path} has mode {mode:04o}, so users other than its owner can read or \
         change it; it is refused. Fix it with: chmod 600 {path}"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists")]
    Exists(PathBuf),
}

/// What [`write_secret`] does when `path` already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace it atomically (a renewed development key).
    Replace,
    /// Leave it and fail with [`KeyFileError::Exists`] (a token key made on first start,
    /// which two processes starting at once must not both make).
    Keep,
}

/// Makes `dir` (and missing parents) with mode 0700. A directory that already exists and
/// is open to group or others is tightened to 0700, unless it has the sticky bit (a shared
/// directory such as `/tmp`, which is left alone with a warning).
pub fn create_private_dir(dir: &Path) -> Result<(), KeyFileError> {
    let create_err = |source| KeyFileError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(create_err)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).map_err(create_err)?.permissions().mode();
        if mode & NOT_PRIVATE_BITS != 0 {
            if mode & 0o1000 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    "the data directory is shared (sticky bit): give --data-dir a private directory"
                );
            } else {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(create_err)?;
                tracing::info!(dir = %dir.display(), was = format!("{:04o}", mode & 0o7777), "data directory made private (0700)");
            }
        }
    }
    Ok(())
}

/// Fails with [`KeyFileError::NotPrivate`] if group or others may read or change `path`
/// (after following symbolic links, as reading it does).
pub fn check_private(path: &Path) -> Result<(), KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| KeyFileError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode();
        if mode & NOT_PRIVATE_BITS != 0 {
            return Err(KeyFileError::NotPrivate {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads a key file after [`check_private`].
pub fn read_private(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    check_private(path)?;
    fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` as a private (0600) file, atomically: a temporary file
/// beside it, created 0600, synced, then moved into place as `existing` says.
pub fn write_secret(path: &Path, contents: &[u8], existing: Existing) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temp = temp_name(path);
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp).map_err(write_err)?;
        file.write_all(contents).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        match existing {
            Existing::Replace => fs::rename(&temp, path).map_err(write_err),
            // A hard link fails if `path` exists, so of two processes only one wins.
            Existing::Keep => match fs::hard_link(&temp, path) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeyFileError::Exists(path.to_path_buf()))
                }
                Err(err) => Err(write_err(err)),
            },
        }
    })();
    // After a rename the temporary name is gone already; otherwise remove it.
    let _ = fs::remove_file(&temp);
    result?;
    sync_parent(path);
    Ok(())
}

/// A temporary name beside `path` that no other process picks at the same time.
fn temp_name(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()))
}

/// Makes the new directory entry durable (best effort: not every file system allows it).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stagecast-keyfile-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_secret_is_made_0600_and_nothing_else_is_left() {
        let dir = temp_dir("secret");
        let key = dir.join("auth.key");
        write_secret(&key, b"secret\n", Existing::Keep).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(fs::read(&key).unwrap(), b"secret\n");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("auth.key")],
            "no temporary file left"
        );
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn keep_never_replaces_and_replace_does_atomically() {
        let dir = temp_dir("keep");
        let key = dir.join("auth.key");
        write_secret(&key, b"first", Existing::Keep).unwrap();
        let err = write_secret(&key, b"second", Existing::Keep).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists(_)), "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"first");
        write_secret(&key, b"third", Existing::Replace).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"third");
        assert_eq!(mode(&key), 0o600);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_key_readable_by_others_is_refused_naming_the_file_and_the_fix() {
        let dir = temp_dir("open");
        let key = dir.join("auth.key");
        fs::write(&key, "k").unwrap();
        for open in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&key, fs::Permissions::from_mode(open)).unwrap();
            let err = read_private(&key).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, KeyFileError::NotPrivate { .. }), "{text}");
            assert!(text.contains(&key.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", key.display())),
                "{text}"
            );
        }
        for private in [0o600, 0o400] {
            fs::set_permissions(&key, fs::Permissions::from_mode(private)).unwrap();
            assert_eq!(read_private(&key).unwrap(), b"k");
        }
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_new_data_directory_is_0700_and_an_open_one_is_tightened() {
        let dir = temp_dir("dir");
        let data = dir.join("a/data");
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        let open = dir.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        let shared = dir.join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        create_private_dir(&shared).unwrap();
        assert_eq!(
            mode(&shared),
            0o1777,
            "a sticky shared directory is left alone"
        );
        fs::remove_dir_all(dir).ok();
    }
}

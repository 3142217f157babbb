//! Small state files (epochs and the like), replaced atomically and checksummed.
//!
//! A ZAB peer must never come back from a crash with an epoch older than one it promised:
//! `write_atomic` writes a temporary file beside the target, fsyncs it, renames it over the
//! target and fsyncs the directory, so after a crash the file holds either the old or the
//! new contents, whole. A checksum makes a damaged file an error ([`AtomicError::Corrupt`])
//! rather than a silent default: a missing file is `Ok(None)` (first start), a bad one is not.
//!
//! On-disk format (little-endian): `magic "CRLS" | len u32 | crc32c(payload) u32 | payload`.
//!
//! [`sync_dir`] lives here too: every module of `storage` uses it after creating, renaming or
//! removing a file, because the entry itself is durable only once its directory is.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// First four bytes of every small state file.
const MAGIC: [u8; 4] = *b"CRLS";
const HEADER_BYTES: usize = 12;
/// Refuse to read anything larger: these files hold a few numbers.
pub const MAX_SMALL_FILE_BYTES: usize = 1 << 20;

/// Errors from [`write_atomic`] and [`read_small`].
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt state file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error("state file {path}: {len} bytes exceeds the limit of {MAX_SMALL_FILE_BYTES}")]
    TooLarge { path: PathBuf, len: usize },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicError + 'a {
    move |source| AtomicError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Fsyncs a directory so that entries created, renamed or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes`, atomically and durably: temp file, write, fsync, rename,
/// fsync the parent directory. When this returns `Ok`, a crash leaves the new contents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicError> {
    if bytes.len() > MAX_SMALL_FILE_BYTES {
        return Err(AtomicError::TooLarge {
            path: path.to_path_buf(),
            len: bytes.len(),
        });
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);

    let mut framed = Vec::with_capacity(HEADER_BYTES + bytes.len());
    framed.extend_from_slice(&MAGIC);
    // The length fits: checked against MAX_SMALL_FILE_BYTES above.
    framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    framed.extend_from_slice(bytes);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(&framed).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename", &tmp))?;
    let dir = parent_dir(path);
    sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    Ok(())
}

/// Reads a file written by [`write_atomic`]. `Ok(None)` if it does not exist; an error if it
/// exists but its magic, length or checksum is wrong.
pub fn read_small(path: &Path) -> Result<Option<Vec<u8>>, AtomicError> {
    let raw = match fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let corrupt = |reason| AtomicError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if raw.len() > HEADER_BYTES + MAX_SMALL_FILE_BYTES {
        return Err(AtomicError::TooLarge {
            path: path.to_path_buf(),
            len: raw.len(),
        });
    }
    let Some((header, payload)) = raw.split_first_chunk::<HEADER_BYTES>() else {
        return Err(corrupt("shorter than its header"));
    };
    let (magic, rest) = header.split_at(4);
    if magic != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len != payload.len() {
        return Err(corrupt("length does not match the file size"));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Some(payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("currentEpoch");
        assert_eq!(read_small(&path).unwrap(), None);
        write_atomic(&path, b"7").unwrap();
        assert_eq!(read_small(&path).unwrap().as_deref(), Some(&b"7"[..]));
        write_atomic(&path, b"12345").unwrap();
        assert_eq!(read_small(&path).unwrap().as_deref(), Some(&b"12345"[..]));
        write_atomic(&path, b"").unwrap();
        assert_eq!(read_small(&path).unwrap().as_deref(), Some(&b""[..]));
        assert!(!dir.path().join("currentEpoch.tmp").exists());
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acceptedEpoch");
        write_atomic(&path, b"epoch 42").unwrap();
        let good = fs::read(&path).unwrap();
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            fs::write(&path, &bad).unwrap();
            assert!(read_small(&path).is_err(), "flipped bit {bit} not detected");
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(
                read_small(&path).is_err(),
                "truncation to {len} not detected"
            );
        }
    }

    #[test]
    fn too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let big = vec![0u8; MAX_SMALL_FILE_BYTES + 1];
        assert!(matches!(
            write_atomic(&path, &big),
            Err(AtomicError::TooLarge { .. })
        ));
    }
}

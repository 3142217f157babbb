//! The one error type of the ZooKeeper data-directory reader: what went wrong, where in which
//! file.

use std::fmt;
use std::path::PathBuf;

use crate::jute::DecodeError;

/// Why a ZooKeeper data file or directory could not be read.
///
/// `file` is filled in by the functions that read files ([`super::read_data_dir`],
/// [`super::read_snapshot_file`], [`super::read_log_file`]); the pure parsers leave it `None`.
#[derive(Debug)]
pub struct ZkDataError {
    pub file: Option<PathBuf>,
    pub kind: ZkDataErrorKind,
}

/// What went wrong. Offsets are byte offsets from the start of the file.
#[derive(Debug)]
pub enum ZkDataErrorKind {
    Io(std::io::Error),
    /// The 4-byte magic at offset 0 is not `ZKSN` (snapshot) or `ZKLG` (log).
    BadMagic {
        found: i32,
        expected: i32,
    },
    /// The file header's format version is not 2.
    UnsupportedVersion {
        found: i32,
    },
    /// A stored Adler-32 does not match the bytes it covers.
    Checksum {
        offset: usize,
        stored: i64,
        computed: u32,
    },
    /// The bytes end before a structure that must be complete (a snapshot, a file header).
    Truncated {
        offset: usize,
        needed: usize,
    },
    /// The bytes are not a valid encoding of what should be there.
    Malformed {
        offset: usize,
        detail: String,
    },
    /// `snapshot.<zxid>.gz` / `.snappy`: compressed snapshots are not read (yet).
    UnsupportedCompression {
        method: String,
    },
    /// The directory has no `version-2` subdirectory and is not one itself.
    NoVersion2Dir,
    /// `version-2` holds no `snapshot.<zxid>` file at all (an empty or foreign directory).
    NoSnapshot,
    /// Every snapshot failed to parse; each file's error is listed, newest first.
    NoValidSnapshot {
        tried: Vec<ZkDataError>,
    },
    /// Transactions collected from the logs do not have increasing zxids.
    OutOfOrder {
        prev_zxid: i64,
        zxid: i64,
    },
}

impl ZkDataError {
    pub fn new(kind: ZkDataErrorKind) -> Self {
        ZkDataError { file: None, kind }
    }

    /// Names the file the error is about (keeps a name already set).
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        if self.file.is_none() {
            self.file = Some(file.into());
        }
        self
    }

    pub(crate) fn malformed(offset: usize, detail: impl Into<String>) -> Self {
        ZkDataError::new(ZkDataErrorKind::Malformed {
            offset,
            detail: detail.into(),
        })
    }

    /// A jute decode error from a reader whose position 0 is at file offset `base`.
    pub(crate) fn decode(base: usize, what: &str, e: DecodeError) -> Self {
        let kind = match e {
            DecodeError::Truncated { offset, needed } => ZkDataErrorKind::Truncated {
                offset: base + offset,
                needed,
            },
            DecodeError::BadLength { offset, length } => ZkDataErrorKind::Malformed {
                offset: base + offset,
                detail: format!("{what}: negative length {length}"),
            },
            DecodeError::BadUtf8 { offset } => ZkDataErrorKind::Malformed {
                offset: base + offset,
                detail: format!("{what}: string is not valid UTF-8"),
            },
            other => ZkDataErrorKind::Malformed {
                offset: base,
                detail: format!("{what}: {other}"),
            },
        };
        ZkDataError::new(kind)
    }
}

impl fmt::Display for ZkDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        match &self.kind {
            ZkDataErrorKind::Io(e) => write!(f, "{e}"),
            ZkDataErrorKind::BadMagic { found, expected } => write!(
                f,
                "bad magic {:?} at offset 0 (expected {:?})",
                String::from_utf8_lossy(&found.to_be_bytes()),
                String::from_utf8_lossy(&expected.to_be_bytes())
            ),
            ZkDataErrorKind::UnsupportedVersion { found } => {
                write!(f, "unsupported file format version {found} (expected 2)")
            }
            ZkDataErrorKind::Checksum {
                offset,
                stored,
                computed,
            } => write!(
                f,
                "Adler-32 mismatch for the checksum at offset {offset}: stored {stored:#x}, \
                 computed {computed:#x}"
            ),
            ZkDataErrorKind::Truncated { offset, needed } => {
                write!(
                    f,
                    "truncated at offset {offset}: {needed} more bytes needed"
                )
            }
            ZkDataErrorKind::Malformed { offset, detail } => {
                write!(f, "malformed at offset {offset}: {detail}")
            }
            ZkDataErrorKind::UnsupportedCompression { method } => {
                write!(f, "{method}-compressed snapshots are not supported")
            }
            ZkDataErrorKind::NoVersion2Dir => write!(f, "no version-2 directory"),
            ZkDataErrorKind::NoSnapshot => write!(f, "no snapshot.<zxid> file"),
            ZkDataErrorKind::NoValidSnapshot { tried } => {
                write!(f, "no valid snapshot; tried:")?;
                for e in tried {
                    write!(f, " [{e}]")?;
                }
                Ok(())
            }
            ZkDataErrorKind::OutOfOrder { prev_zxid, zxid } => write!(
                f,
                "transaction zxid {zxid:#x} does not follow the previous one ({prev_zxid:#x})"
            ),
        }
    }
}

impl std::error::Error for ZkDataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ZkDataErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

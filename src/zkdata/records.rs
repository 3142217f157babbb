//! Records shared by ZooKeeper's snapshot and log files: the file header and the persisted stat.

use bytes::Bytes;

use super::error::{ZkDataError, ZkDataErrorKind};
use crate::jute::{DecodeError, Reader, Stat};

/// `ZKSN`, the magic of `snapshot.<zxid>` files.
pub const SNAP_MAGIC: i32 = i32::from_be_bytes(*b"ZKSN");
/// `ZKLG`, the magic of `log.<zxid>` files.
pub const LOG_MAGIC: i32 = i32::from_be_bytes(*b"ZKLG");
/// The only file format version ZooKeeper has written (3.x).
pub const FILE_VERSION: i32 = 2;
/// Size of [`FileHeader`] on disk.
pub const FILE_HEADER_LEN: usize = 16;

/// `FileHeader { int magic; int version; long dbid; }`, the first 16 bytes of every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub magic: i32,
    pub version: i32,
    /// Unused: ZooKeeper 3.8 writes 0 in logs and -1 in snapshots.
    pub dbid: i64,
}

impl FileHeader {
    /// Reads and checks the header at offset 0 of `bytes`.
    pub(crate) fn parse(bytes: &Bytes, expected_magic: i32) -> Result<FileHeader, ZkDataError> {
        let mut r = Reader::new(bytes.clone());
        let header = (|| -> Result<FileHeader, DecodeError> {
            Ok(FileHeader {
                magic: r.read_i32()?,
                version: r.read_i32()?,
                dbid: r.read_i64()?,
            })
        })();
        // A file too short for its magic is reported as "bad magic" only once we can see it.
        let header = header.map_err(|e| ZkDataError::decode(0, "file header", e))?;
        if header.magic != expected_magic {
            return Err(ZkDataError::new(ZkDataErrorKind::BadMagic {
                found: header.magic,
                expected: expected_magic,
            }));
        }
        if header.version != FILE_VERSION {
            return Err(ZkDataError::new(ZkDataErrorKind::UnsupportedVersion {
                found: header.version,
            }));
        }
        Ok(header)
    }
}

/// `StatPersisted`: the stat fields ZooKeeper stores per znode.
///
/// This is not the `Stat` clients see; ZooKeeper's `DataNode.copyStat` derives that:
///
/// - `dataLength` and `numChildren` are not persisted: the data's length (0 for null data) and
///   the size of the child set;
/// - the persisted `cversion` counts child *creations* only; clients see
///   `2 * cversion - numChildren` (every child created and since deleted is a second change).
///   So `/zookeeper`, stored with cversion 0 and 2 children, reports cversion -2. The
///   `parentCVersion` of create transactions is in the persisted (creations) unit;
/// - `ephemeral_owner` is stored raw: a session id, 0, or one of the container/TTL encodings
///   (see [`EphemeralKind`]); clients see 0 for the latter two.
///
/// [`ZkStat::to_client_stat`] does this derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZkStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

impl ZkStat {
    /// Size on disk: 6 longs and 3 ints.
    pub const LEN: usize = 6 * 8 + 3 * 4;

    pub fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ZkStat {
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            pzxid: r.read_i64()?,
        })
    }

    /// How ZooKeeper (with `zookeeper.extendedTypesEnabled=true`) reads `ephemeral_owner`.
    pub fn ephemeral_kind(&self) -> EphemeralKind {
        EphemeralKind::from_owner(self.ephemeral_owner)
    }

    /// The `Stat` a client would see, given the derived fields, as ZooKeeper's
    /// `DataNode.copyStat` computes it: cversion becomes `2 * cversion - num_children`, and
    /// containers and TTL nodes report an ephemeral owner of 0.
    pub fn to_client_stat(&self, data_length: i32, num_children: i32) -> Stat {
        let ephemeral_owner = match self.ephemeral_kind() {
            EphemeralKind::Session(id) => id,
            _ => 0,
        };
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner,
            data_length,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// The meaning of a stored `ephemeralOwner` (`EphemeralType` in ZooKeeper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralKind {
    /// 0: a persistent node.
    Persistent,
    /// An ephemeral node owned by this session.
    Session(i64),
    /// `Long.MIN_VALUE` (0x8000_0000_0000_0000): a container node.
    Container,
    /// High byte 0xff, extended-type bits (0x00ff_ff00_0000_0000) zero, low 40 bits the TTL in
    /// milliseconds: a persistent node with a TTL. Only meaningful when the server ran with
    /// `zookeeper.extendedTypesEnabled=true`, which also caps server ids at 254 so that no
    /// session id can start with 0xff.
    Ttl(i64),
}

impl EphemeralKind {
    const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
    const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
    const VALUE_MASK: i64 = !(Self::EXTENDED_MASK | Self::RESERVED_BITS_MASK);

    pub fn from_owner(owner: i64) -> Self {
        if owner == 0 {
            EphemeralKind::Persistent
        } else if owner == i64::MIN {
            EphemeralKind::Container
        } else if owner & Self::EXTENDED_MASK == Self::EXTENDED_MASK
            && owner & Self::RESERVED_BITS_MASK == 0
        {
            EphemeralKind::Ttl(owner & Self::VALUE_MASK)
        } else {
            EphemeralKind::Session(owner)
        }
    }

    /// The stored `ephemeralOwner` value.
    pub fn to_owner(self) -> i64 {
        match self {
            EphemeralKind::Persistent => 0,
            EphemeralKind::Session(id) => id,
            EphemeralKind::Container => i64::MIN,
            EphemeralKind::Ttl(ms) => Self::EXTENDED_MASK | (ms & Self::VALUE_MASK),
        }
    }
}

/// The zxid in a `snapshot.<hex>` / `log.<hex>` file name (`Util.getZxidFromName`); a
/// `.gz`/`.snappy` suffix after the hex is allowed. `None` for other names.
pub fn zxid_from_file_name(name: &str, prefix: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let hex = rest.split('.').next()?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_kinds_round_trip() {
        for kind in [
            EphemeralKind::Persistent,
            EphemeralKind::Session(0x1000015e66f0006),
            EphemeralKind::Container,
            EphemeralKind::Ttl(3_600_000),
        ] {
            assert_eq!(EphemeralKind::from_owner(kind.to_owner()), kind);
        }
        assert_eq!(
            EphemeralKind::Ttl(3_600_000).to_owner() as u64,
            0xff00_0000_0036_ee80
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(zxid_from_file_name("log.1f", "log"), Some(0x1f));
        assert_eq!(
            zxid_from_file_name("snapshot.100000002.snappy", "snapshot"),
            Some(0x1_0000_0002)
        );
        assert_eq!(zxid_from_file_name("snapshot.", "snapshot"), None);
        assert_eq!(zxid_from_file_name("logx.1", "log"), None);
        assert_eq!(zxid_from_file_name("log.zz", "log"), None);
        assert_eq!(zxid_from_file_name("acceptedEpoch", "log"), None);
    }
}

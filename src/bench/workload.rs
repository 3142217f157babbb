//! Workloads: what each benchmark client sends, encoded straight into its write buffer.
//!
//! A workload is an [`OpSource`]: asked for the next request, it appends one complete client
//! frame (length prefix, request header, body) to the connection's output buffer and says
//! which [`OpKind`] it was, so the reply can be timed and counted under that name. Paths are
//! built once up front and values are shared `Bytes`, so producing a request costs a few
//! copies into a buffer that is reused and no allocation.
//!
//! The request bodies are written with the jute [`Writer`] in exactly the shape
//! [`Request::encode`](crate::jute::Request::encode) produces; the unit tests below check that
//! byte for byte.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use clap::ValueEnum;

use crate::jute::records::create_flags;
use crate::jute::{Acl, OpCode, Writer};

/// The benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Create new, uniquely named persistent nodes.
    Create,
    /// getData on random keys.
    Get,
    /// setData on random keys.
    Set,
    /// getData or setData on random keys (see --read-ratio).
    Mixed,
    /// exists on random keys.
    Exists,
    /// getChildren on random small directories (10 children each).
    GetChildren,
    /// multi of --multi-ops setData operations on random keys.
    Multi,
    /// Session churn: connect, create an ephemeral node, close.
    Sessions,
    /// Watch fan-out: watcher sessions hold a data watch on one key, one writer sets it.
    Watch,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Get => "get",
            Workload::Set => "set",
            Workload::Mixed => "mixed",
            Workload::Exists => "exists",
            Workload::GetChildren => "get-children",
            Workload::Multi => "multi",
            Workload::Sessions => "sessions",
            Workload::Watch => "watch",
        }
    }

    /// True when the workload reads or writes the pre-created key space.
    pub fn needs_keys(self) -> bool {
        matches!(
            self,
            Workload::Get | Workload::Set | Workload::Mixed | Workload::Exists | Workload::Multi
        )
    }
}

/// The operation a request was timed and counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Create,
    Delete,
    Get,
    Set,
    Exists,
    GetChildren,
    Multi,
    /// TCP connect plus the session handshake.
    Connect,
    CloseSession,
    /// One whole connect, create-ephemeral, close cycle.
    Session,
    /// A watch notification, timed from the setData that fired it.
    Notify,
}

impl OpKind {
    pub const COUNT: usize = 11;
    pub const ALL: [OpKind; OpKind::COUNT] = [
        OpKind::Create,
        OpKind::Delete,
        OpKind::Get,
        OpKind::Set,
        OpKind::Exists,
        OpKind::GetChildren,
        OpKind::Multi,
        OpKind::Connect,
        OpKind::CloseSession,
        OpKind::Session,
        OpKind::Notify,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Delete => "delete",
            OpKind::Get => "get",
            OpKind::Set => "set",
            OpKind::Exists => "exists",
            OpKind::GetChildren => "get-children",
            OpKind::Multi => "multi",
            OpKind::Connect => "connect",
            OpKind::CloseSession => "close",
            OpKind::Session => "session",
            OpKind::Notify => "notify",
        }
    }
}

/// A small, fast, non-cryptographic generator (SplitMix64): one per client, seeded apart.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    pub fn new(seed: u64) -> Self {
        FastRng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The paths a run uses, all below one prefix.
#[derive(Debug, Clone)]
pub struct KeySpace {
    pub prefix: String,
    /// `prefix/k/NNNNNNNN`: the keys that get/set/mixed/exists/multi use.
    pub keys: Arc<Vec<String>>,
    /// `prefix/g/NNNNNN`: the directories get-children lists.
    pub dirs: Arc<Vec<String>>,
    /// Children created below each directory.
    pub children_per_dir: usize,
}

impl KeySpace {
    pub const CHILDREN_PER_DIR: usize = 10;

    pub fn new(prefix: &str, workload: Workload, keys: usize) -> Self {
        let prefix = prefix.trim_end_matches('/').to_string();
        let key_paths = if workload.needs_keys() {
            (0..keys.max(1))
                .map(|i| format!("{prefix}/k/{i:08}"))
                .collect()
        } else {
            Vec::new()
        };
        let dirs = if workload == Workload::GetChildren {
            (0..(keys / Self::CHILDREN_PER_DIR).max(1))
                .map(|i| format!("{prefix}/g/{i:06}"))
                .collect()
        } else {
            Vec::new()
        };
        KeySpace {
            prefix,
            keys: Arc::new(key_paths),
            dirs: Arc::new(dirs),
            children_per_dir: Self::CHILDREN_PER_DIR,
        }
    }

    /// The directories the workload needs, parents first (the prefix's own ancestors too).
    pub fn dirs_for(&self, workload: Workload) -> Vec<String> {
        let mut out = Vec::new();
        // Ancestors of the prefix, e.g. "/a" for "/a/b".
        let mut at = 0;
        while let Some(i) = self.prefix[at + 1..].find('/') {
            at += 1 + i;
            out.push(self.prefix[..at].to_string());
        }
        out.push(self.prefix.clone());
        let sub = match workload {
            w if w.needs_keys() => "k",
            Workload::GetChildren => "g",
            Workload::Create => "c",
            Workload::Sessions => "s",
            Workload::Watch => "w",
            _ => return out,
        };
        out.push(format!("{}/{}", self.prefix, sub));
        out
    }

    /// The leaves setup creates in parallel (after `dirs_for`), in creation order.
    pub fn setup_paths(&self, workload: Workload) -> Vec<String> {
        match workload {
            Workload::GetChildren => {
                let mut out = Vec::with_capacity(self.dirs.len() * (1 + self.children_per_dir));
                for d in self.dirs.iter() {
                    out.push(d.clone());
                }
                out
            }
            w if w.needs_keys() => self.keys.to_vec(),
            _ => Vec::new(),
        }
    }

    /// Second setup wave for get-children: the children of each directory.
    pub fn setup_children(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.dirs.len() * self.children_per_dir);
        for d in self.dirs.iter() {
            for c in 0..self.children_per_dir {
                out.push(format!("{d}/child-{c:02}"));
            }
        }
        out
    }
}

/// Produces requests for one client connection.
pub trait OpSource: Send {
    /// Appends one complete frame with `xid` to `buf` and returns what it is, or `None` when
    /// this source has nothing more to send.
    fn next_op(&mut self, xid: i32, buf: &mut BytesMut) -> Option<OpKind>;
}

/// Starts a frame: reserves the length prefix and writes the request header. Returns the
/// offset of the length prefix for [`end_frame`].
pub fn begin_frame(buf: &mut BytesMut, xid: i32, op: OpCode) -> usize {
    let start = buf.len();
    buf.put_i32(0);
    buf.put_i32(xid);
    buf.put_i32(op.code());
    start
}

/// Patches the length prefix of the frame begun at `start`.
pub fn end_frame(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn with_writer(buf: &mut BytesMut, f: impl FnOnce(&mut Writer)) {
    let mut w = Writer::with_buf(std::mem::take(buf));
    f(&mut w);
    *buf = w.into_inner();
}

fn write_open_acl(w: &mut Writer) {
    // OPEN_ACL_UNSAFE: one entry, all perms, world:anyone.
    w.write_i32(1);
    w.write_i32(crate::jute::records::perms::ALL);
    w.write_string("world");
    w.write_string("anyone");
}

/// create(path, data, OPEN_ACL_UNSAFE, flags), opcode 1.
pub fn encode_create(buf: &mut BytesMut, xid: i32, path: &str, data: &[u8], flags: i32) {
    let start = begin_frame(buf, xid, OpCode::Create);
    with_writer(buf, |w| {
        w.write_string(path);
        w.write_buffer(Some(data));
        write_open_acl(w);
        w.write_i32(flags);
    });
    end_frame(buf, start);
}

/// delete(path, version -1).
pub fn encode_delete(buf: &mut BytesMut, xid: i32, path: &str) {
    let start = begin_frame(buf, xid, OpCode::Delete);
    with_writer(buf, |w| {
        w.write_string(path);
        w.write_i32(-1);
    });
    end_frame(buf, start);
}

/// getData, exists or getChildren: a path and a watch flag.
pub fn encode_path_watch(buf: &mut BytesMut, xid: i32, op: OpCode, path: &str, watch: bool) {
    let start = begin_frame(buf, xid, op);
    with_writer(buf, |w| {
        w.write_string(path);
        w.write_bool(watch);
    });
    end_frame(buf, start);
}

/// setData(path, data, version -1).
pub fn encode_set(buf: &mut BytesMut, xid: i32, path: &str, data: &[u8]) {
    let start = begin_frame(buf, xid, OpCode::SetData);
    with_writer(buf, |w| {
        w.write_string(path);
        w.write_buffer(Some(data));
        w.write_i32(-1);
    });
    end_frame(buf, start);
}

/// A multi of setData(path, data, -1) for each path.
pub fn encode_multi_set<'a>(
    buf: &mut BytesMut,
    xid: i32,
    paths: impl IntoIterator<Item = &'a str>,
    data: &[u8],
) {
    let start = begin_frame(buf, xid, OpCode::Multi);
    with_writer(buf, |w| {
        for p in paths {
            w.write_i32(OpCode::SetData.code());
            w.write_bool(false);
            w.write_i32(-1);
            w.write_string(p);
            w.write_buffer(Some(data));
            w.write_i32(-1);
        }
        w.write_i32(-1);
        w.write_bool(true);
        w.write_i32(-1);
    });
    end_frame(buf, start);
}

/// A header-only request: ping (xid -2) or closeSession.
pub fn encode_header_only(buf: &mut BytesMut, xid: i32, op: OpCode) {
    let start = begin_frame(buf, xid, op);
    end_frame(buf, start);
}

/// The OPEN_ACL_UNSAFE list as the codec's records (for tests and reference).
pub fn open_acl() -> Vec<Acl> {
    Acl::open_unsafe()
}

/// Setup and teardown: create or delete a fixed list of paths, then stop.
pub struct PathList {
    paths: Vec<String>,
    next: usize,
    create: bool,
    data: Bytes,
}

impl PathList {
    pub fn creating(paths: Vec<String>, data: Bytes) -> Self {
        PathList {
            paths,
            next: 0,
            create: true,
            data,
        }
    }

    pub fn deleting(paths: Vec<String>) -> Self {
        PathList {
            paths,
            next: 0,
            create: false,
            data: Bytes::new(),
        }
    }
}

impl OpSource for PathList {
    fn next_op(&mut self, xid: i32, buf: &mut BytesMut) -> Option<OpKind> {
        let path = self.paths.get(self.next)?;
        self.next += 1;
        if self.create {
            encode_create(buf, xid, path, &self.data, create_flags::PERSISTENT);
            Some(OpKind::Create)
        } else {
            encode_delete(buf, xid, path);
            Some(OpKind::Delete)
        }
    }
}

/// The measured load of get, set, mixed, exists, get-children and multi.
pub struct KeyLoad {
    workload: Workload,
    paths: Arc<Vec<String>>,
    value: Bytes,
    read_ratio: f64,
    multi_ops: usize,
    rng: FastRng,
}

impl KeyLoad {
    pub fn new(
        workload: Workload,
        space: &KeySpace,
        value: Bytes,
        read_ratio: f64,
        multi_ops: usize,
        seed: u64,
    ) -> Self {
        let paths = if workload == Workload::GetChildren {
            space.dirs.clone()
        } else {
            space.keys.clone()
        };
        KeyLoad {
            workload,
            paths,
            value,
            read_ratio,
            multi_ops: multi_ops.max(1),
            rng: FastRng::new(seed),
        }
    }

    fn pick(&mut self) -> &str {
        let i = self.rng.below(self.paths.len());
        &self.paths[i]
    }
}

impl OpSource for KeyLoad {
    fn next_op(&mut self, xid: i32, buf: &mut BytesMut) -> Option<OpKind> {
        if self.paths.is_empty() {
            return None;
        }
        let kind = match self.workload {
            Workload::Get => OpKind::Get,
            Workload::Set => OpKind::Set,
            Workload::Exists => OpKind::Exists,
            Workload::GetChildren => OpKind::GetChildren,
            Workload::Multi => OpKind::Multi,
            Workload::Mixed => {
                if self.rng.unit() < self.read_ratio {
                    OpKind::Get
                } else {
                    OpKind::Set
                }
            }
            Workload::Create | Workload::Sessions | Workload::Watch => return None,
        };
        match kind {
            OpKind::Get => {
                let i = self.rng.below(self.paths.len());
                encode_path_watch(buf, xid, OpCode::GetData, &self.paths[i], false);
            }
            OpKind::Exists => {
                let i = self.rng.below(self.paths.len());
                encode_path_watch(buf, xid, OpCode::Exists, &self.paths[i], false);
            }
            OpKind::GetChildren => {
                let i = self.rng.below(self.paths.len());
                encode_path_watch(buf, xid, OpCode::GetChildren, &self.paths[i], false);
            }
            OpKind::Set => {
                let value = self.value.clone();
                let path = self.pick();
                encode_set(buf, xid, path, &value);
            }
            _ => {
                // Multi: distinct-ish random keys (a repeat is harmless for setData -1).
                let n = self.multi_ops;
                let len = self.paths.len();
                let idx: [usize; 16] = std::array::from_fn(|_| self.rng.below(len));
                let paths = self.paths.clone();
                encode_multi_set(
                    buf,
                    xid,
                    idx.iter().take(n.min(16)).map(|&i| paths[i].as_str()),
                    &self.value,
                );
            }
        }
        Some(kind)
    }
}

/// The create workload: `prefix/c/RUN-CLIENT-N` for N = 0, 1, 2, ...
pub struct CreateLoad {
    base: String,
    value: Bytes,
    pub created: u64,
    path: String,
    /// Creates left to all clients together (`--max-ops`); `None` is unlimited.
    budget: Option<Arc<AtomicU64>>,
}

impl CreateLoad {
    pub fn new(space: &KeySpace, run_id: &str, client: usize, value: Bytes) -> Self {
        CreateLoad {
            base: Self::base(space, run_id, client),
            value,
            created: 0,
            path: String::new(),
            budget: None,
        }
    }

    /// Stops this client once the clients sharing `budget` have created that many nodes.
    pub fn with_budget(mut self, budget: Arc<AtomicU64>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The common part of this client's node names; node N is `{base}{N}`.
    pub fn base(space: &KeySpace, run_id: &str, client: usize) -> String {
        format!("{}/c/{run_id}-{client}-", space.prefix)
    }
}

impl OpSource for CreateLoad {
    fn next_op(&mut self, xid: i32, buf: &mut BytesMut) -> Option<OpKind> {
        use std::fmt::Write as _;
        if let Some(b) = &self.budget {
            b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .ok()?;
        }
        self.path.clear();
        self.path.push_str(&self.base);
        let _ = write!(self.path, "{}", self.created);
        self.created += 1;
        encode_create(buf, xid, &self.path, &self.value, create_flags::PERSISTENT);
        Some(OpKind::Create)
    }
}

/// Makes a value of `size` bytes (printable, not all one byte).
pub fn make_value(size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::request::CreateRequest;
    use crate::jute::{MultiOp, Request, RequestHeader};

    /// What the canonical codec produces for `req` as a frame with `xid`.
    fn canonical(xid: i32, req: &Request) -> Vec<u8> {
        let mut w = Writer::new();
        RequestHeader {
            xid,
            op: req.op_code().code(),
        }
        .write(&mut w);
        req.encode(&mut w);
        let body = w.into_inner();
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn create_matches_codec() {
        let mut buf = BytesMut::new();
        encode_create(&mut buf, 7, "/a/b", b"xyz", create_flags::EPHEMERAL);
        let req = Request::Create(CreateRequest {
            op: OpCode::Create,
            path: "/a/b".into(),
            data: Some(Bytes::from_static(b"xyz")),
            acl: open_acl(),
            flags: create_flags::EPHEMERAL,
            ttl_ms: -1,
        });
        assert_eq!(&buf[..], &canonical(7, &req)[..]);
    }

    #[test]
    fn simple_requests_match_codec() {
        type Encode = Box<dyn Fn(&mut BytesMut)>;
        let cases: Vec<(Request, Encode)> = vec![
            (
                Request::Delete {
                    path: "/x".into(),
                    version: -1,
                },
                Box::new(|b| encode_delete(b, 3, "/x")),
            ),
            (
                Request::GetData {
                    path: "/x".into(),
                    watch: true,
                },
                Box::new(|b| encode_path_watch(b, 3, OpCode::GetData, "/x", true)),
            ),
            (
                Request::Exists {
                    path: "/x".into(),
                    watch: false,
                },
                Box::new(|b| encode_path_watch(b, 3, OpCode::Exists, "/x", false)),
            ),
            (
                Request::GetChildren {
                    path: "/x".into(),
                    watch: false,
                    with_stat: false,
                },
                Box::new(|b| encode_path_watch(b, 3, OpCode::GetChildren, "/x", false)),
            ),
            (
                Request::SetData {
                    path: "/x".into(),
                    data: Some(Bytes::from_static(b"v")),
                    version: -1,
                },
                Box::new(|b| encode_set(b, 3, "/x", b"v")),
            ),
            (
                Request::Ping,
                Box::new(|b| encode_header_only(b, 3, OpCode::Ping)),
            ),
            (
                Request::CloseSession,
                Box::new(|b| encode_header_only(b, 3, OpCode::CloseSession)),
            ),
        ];
        for (req, enc) in cases {
            let mut buf = BytesMut::new();
            enc(&mut buf);
            assert_eq!(&buf[..], &canonical(3, &req)[..], "{req:?}");
        }
    }

    #[test]
    fn multi_matches_codec_and_frames_append() {
        let mut buf = BytesMut::new();
        encode_header_only(&mut buf, -2, OpCode::Ping);
        let ping_len = buf.len();
        encode_multi_set(&mut buf, 9, ["/a", "/b"], b"vv");
        let req = Request::Multi(vec![
            MultiOp::SetData {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"vv")),
                version: -1,
            },
            MultiOp::SetData {
                path: "/b".into(),
                data: Some(Bytes::from_static(b"vv")),
                version: -1,
            },
        ]);
        assert_eq!(&buf[ping_len..], &canonical(9, &req)[..]);
        assert_eq!(&buf[..ping_len], &canonical(-2, &Request::Ping)[..]);
    }

    #[test]
    fn key_load_mixed_respects_read_ratio_and_paths() {
        let space = KeySpace::new("/bench/", Workload::Mixed, 100);
        assert_eq!(space.keys.len(), 100);
        assert_eq!(space.keys[5], "/bench/k/00000005");
        let mut load = KeyLoad::new(Workload::Mixed, &space, make_value(10), 0.9, 4, 1);
        let mut buf = BytesMut::new();
        let mut gets = 0;
        for xid in 0..10_000 {
            if load.next_op(xid, &mut buf) == Some(OpKind::Get) {
                gets += 1;
            }
        }
        assert!((8_700..9_300).contains(&gets), "{gets}");
    }

    #[test]
    fn create_load_names_are_unique() {
        let space = KeySpace::new("/p", Workload::Create, 0);
        let mut load = CreateLoad::new(&space, "r1", 3, make_value(4));
        let mut buf = BytesMut::new();
        load.next_op(1, &mut buf);
        load.next_op(2, &mut buf);
        let mut w = BytesMut::new();
        encode_create(&mut w, 1, "/p/c/r1-3-0", b"abcd", 0);
        encode_create(&mut w, 2, "/p/c/r1-3-1", b"abcd", 0);
        assert_eq!(buf, w);
        assert_eq!(load.created, 2);
    }

    #[test]
    fn create_budget_is_shared_by_all_clients() {
        let space = KeySpace::new("/b", Workload::Create, 10);
        let budget = Arc::new(AtomicU64::new(5));
        let mut loads: Vec<CreateLoad> = (0..3)
            .map(|i| CreateLoad::new(&space, "r", i, make_value(4)).with_budget(budget.clone()))
            .collect();
        let mut buf = BytesMut::new();
        let mut made = 0;
        for round in 0..4 {
            for l in loads.iter_mut() {
                if l.next_op(round, &mut buf).is_some() {
                    made += 1;
                }
            }
        }
        assert_eq!(made, 5);
        assert_eq!(loads.iter().map(|l| l.created).sum::<u64>(), 5);
    }

    #[test]
    fn dirs_include_prefix_ancestors() {
        let space = KeySpace::new("/a/b", Workload::GetChildren, 25);
        assert_eq!(
            space.dirs_for(Workload::GetChildren),
            ["/a", "/a/b", "/a/b/g"]
        );
        assert_eq!(space.setup_paths(Workload::GetChildren).len(), 2);
        assert_eq!(space.setup_children().len(), 20);
        assert_eq!(space.setup_children()[0], "/a/b/g/000000/child-00");
    }

    #[test]
    fn rng_below_is_in_range() {
        let mut r = FastRng::new(42);
        for n in [1, 2, 3, 10, 10_000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
    }
}

"""`corral import-zk` against a real Apache ZooKeeper 3.8 data directory.

Apache ZooKeeper (Debian's ``zookeeper`` package) runs on 127.0.0.1 with a small
``snapCount`` so that its data directory holds several fuzzy snapshots and logs.
kazoo writes a tree with every kind of node (nested persistent nodes, data and
empty data, digest ACLs and setACL, sequential nodes, a container with a child,
a TTL node, ephemerals of a session that stays open and of one that closes,
deletes that move cversion/pzxid, a multi), then reads the whole tree back with
stats and ACLs. ZooKeeper is stopped with SIGTERM (by PID) while one session is
still open. ``corral import-zk`` converts the data directory, a Corral server
starts on the result, and kazoo must read back the identical tree: data, ACLs
and every Stat field (czxid, mzxid, pzxid, ctime, mtime, version, cversion,
aversion, dataLength, numChildren, ephemeralOwner).

A control test restarts ZooKeeper itself on its own data directory and checks
the same equality, which validates the comparison.

Self-contained on purpose (the suite's ``servers.py``/``conftest.py`` live on
another branch); the helpers below follow their conventions: every process
gets its own directory, listens on 127.0.0.1 only, and is stopped by PID.

Environment: ``INTEROP_CORRAL_BIN`` names the corral binary (default
``target/release/corral``, else ``target/debug/corral``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections import namedtuple
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0
TTL_MS = 3_600_000  # long enough that no server reaps it during the test
USER, PASSWORD = "alice", "secret"

STAT_FIELDS = ("czxid", "mzxid", "pzxid", "ctime", "mtime", "version", "cversion",
               "aversion", "dataLength", "numChildren", "ephemeralOwner")


# --------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ruok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"ruok")
            return s.recv(16) == b"imok"
    except OSError:
        return False


class Proc:
    """A server process started by this module, stopped by its PID only."""

    def __init__(self, name: str, argv, workdir: Path, port: int):
        self.name, self.workdir, self.port = name, workdir, port
        self.log = workdir / f"{name}.out"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=str(workdir), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.tail()}")
            if ruok(self.port):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {READY_TIMEOUT_S}s\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM to our own PID; SIGKILL only if it does not exit in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        out = []
        for p in [self.log, *sorted(self.workdir.glob("*.log"))]:
            try:
                lines = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"--- {p}\n" + "\n".join(lines[-n:]))
        return "\n".join(out)


def _dpkg_files(pkg: str):
    try:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def zookeeper_classpath() -> str:
    jar = next((f for f in _dpkg_files("libzookeeper-java") if f.endswith("/zookeeper.jar")),
               "/usr/share/java/zookeeper.jar")
    if not os.path.exists(jar):
        pytest.skip("Apache ZooKeeper is not installed (apt-get install zookeeper)")
    cp = [jar]
    for name in ("slf4j-log4j12.jar", "log4j-1.2.jar"):
        p = os.path.join(os.path.dirname(jar), name)
        if os.path.exists(p):
            cp.append(p)
    return ":".join(cp)


def start_zookeeper(workdir: Path, data_dir: Path, port: int) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "zoo.cfg"
    cfg.write_text(
        f"tickTime=2000\ndataDir={data_dir}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
        "4lw.commands.whitelist=*\nadmin.enableServer=false\nsnapCount=16\npreAllocSize=16\n"
        "extendedTypesEnabled=true\n")
    log4j = workdir / "log4j.properties"
    log4j.write_text(
        "log4j.rootLogger=INFO, FILE\nlog4j.appender.FILE=org.apache.log4j.FileAppender\n"
        f"log4j.appender.FILE.File={workdir / 'zookeeper.log'}\n"
        "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] - %m%n\n")
    argv = [
        os.environ.get("JAVA", "java"), "-Xmx256m", "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1", "-Djava.net.preferIPv4Stack=true",
        f"-Dlog4j.configuration=file:{log4j}", "-Dzookeeper.extendedTypesEnabled=true",
        "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.jmx.log4j.disable=true",
        "-Dzookeeper.4lw.commands.whitelist=*",
        "-cp", zookeeper_classpath(),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg),
    ]
    p = Proc("zookeeper", argv, workdir, port)
    p.wait_ready()
    return p


def corral_binary() -> Path:
    env = os.environ.get("INTEROP_CORRAL_BIN")
    if env:
        return Path(env)
    for p in (REPO_ROOT / "target/release/corral", REPO_ROOT / "target/debug/corral"):
        if p.exists():
            return p
    pytest.skip("no corral binary (cargo build --release, or set INTEROP_CORRAL_BIN)")


def start_corral(workdir: Path, data_dir: Path, port: int) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "zoo.cfg"
    cfg.write_text(
        f"tickTime=2000\ndataDir={data_dir}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
        "4lw.commands.whitelist=*\nextendedTypesEnabled=true\n")
    p = Proc("corral", [str(corral_binary()), "server", str(cfg)], workdir, port)
    p.wait_ready()
    return p


# --------------------------------------------------------------------------
# kazoo: container and TTL creates (kazoo has no API for them)


class CreateSpecial(namedtuple("CreateSpecial", "path data acl flags ttl opcode")):
    """createContainer (19, flags 4) or createTTL (21, flags 5); reply: path + Stat."""

    @property
    def type(self):
        return self.opcode

    def serialize(self):
        from kazoo.protocol.serialization import int_struct, long_struct, write_buffer, write_string
        b = bytearray()
        b.extend(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(int_struct.pack(len(self.acl)))
        for acl in self.acl:
            b.extend(int_struct.pack(acl.perms))
            b.extend(write_string(acl.id.scheme))
            b.extend(write_string(acl.id.id))
        b.extend(int_struct.pack(self.flags))
        if self.opcode == 21:
            b.extend(long_struct.pack(self.ttl))
        return b

    @classmethod
    def deserialize(cls, buf, off):
        from kazoo.protocol.serialization import read_string
        path, off = read_string(buf, off)
        return path


def call(client, request, timeout=15):
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=timeout)


def create_container(client, path, data=b""):
    from kazoo.security import OPEN_ACL_UNSAFE
    return call(client, CreateSpecial(path, data, OPEN_ACL_UNSAFE, 4, 0, 19))


def create_ttl(client, path, data=b"", ttl=TTL_MS):
    from kazoo.security import OPEN_ACL_UNSAFE
    return call(client, CreateSpecial(path, data, OPEN_ACL_UNSAFE, 5, ttl, 21))


# --------------------------------------------------------------------------
# the tree


def digest_id(user: str, password: str) -> str:
    h = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(h).decode()}"


def connect(hosts: str, timeout: float = 10.0, auth: bool = True):
    from kazoo.client import KazooClient
    c = KazooClient(hosts=hosts, timeout=timeout,
                    auth_data=[("digest", f"{USER}:{PASSWORD}")] if auth else None)
    c.start(timeout=20)
    return c


def read_tree(client) -> dict:
    """path -> (data, [(perms, scheme, id)], {stat field: value}) for every node."""
    out = {}

    def walk(path):
        data, stat = client.get(path)
        acls, _ = client.get_acls(path)
        out[path] = (
            data,
            [(a.perms, a.id.scheme, a.id.id) for a in acls],
            {f: getattr(stat, f) for f in STAT_FIELDS},
        )
        for child in sorted(client.get_children(path)):
            walk(("" if path == "/" else path) + "/" + child)

    walk("/")
    return out


def assert_same_tree(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want), "node sets differ"
    diffs = []
    for path in sorted(want):
        for what, g, w in zip(("data", "acl", "stat"), got[path], want[path]):
            if g != w:
                if what == "stat":
                    g = {k: v for k, v in g.items() if w[k] != v}
                    w = {k: v for k, v in w.items() if k in g}
                diffs.append(f"{path} {what}: got {g!r}, want {w!r}")
    assert not diffs, "\n".join(diffs)


# --------------------------------------------------------------------------
# reading a Corral snapshot (proto/snapshot.proto) without the server


def _varint(buf: bytes, off: int):
    shift = value = 0
    while True:
        b = buf[off]
        off += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, off
        shift += 7


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: bytes):
    """(field number, value) of a protobuf message: ints for varints, bytes otherwise."""
    off = 0
    while off < len(buf):
        key, off = _varint(buf, off)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, off = _varint(buf, off)
        elif wire == 2:
            n, off = _varint(buf, off)
            value, off = buf[off:off + n], off + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        yield field, value


def read_corral_snapshot(path: Path):
    """(zxid, nodes {path: fields}, acls {index: [(perms, scheme, id)]}, sessions {id: timeout})."""
    raw = path.read_bytes()
    assert raw[:8] == b"CRLSNAP\0" and raw[-8:] == b"CRLSEND\0"
    zxid = struct.unpack_from("<q", raw, 16)[0]
    body, off = raw[:-12], 32
    nodes, acls, sessions = {}, {}, {}
    names = {1: "path", 2: "data", 3: "acl_index", 4: "czxid", 5: "mzxid", 6: "ctime",
             7: "mtime", 8: "version", 9: "cversion", 10: "aversion", 11: "ephemeral_owner",
             12: "pzxid", 13: "num_children"}
    while off < len(body):
        n, off = _varint(body, off)
        item, off = body[off:off + n], off + n
        ((kind, msg),) = list(_fields(item))
        if kind == 1:
            node = {v: 0 for v in names.values()}
            node["data"] = None
            for f, v in _fields(msg):
                node[names[f]] = v if f in (1, 2) else _signed(v)
            node["path"] = node["path"].decode()
            nodes[node["path"]] = node
        elif kind == 2:
            index, entries = 0, []
            for f, v in _fields(msg):
                if f == 1:
                    index = v
                else:
                    a = {1: 0, 2: b"", 3: b""}
                    a.update(dict(_fields(v)))
                    entries.append((_signed(a[1]), a[2].decode(), a[3].decode()))
            acls[index] = entries
        elif kind == 3:
            s = {1: 0, 2: 0}
            s.update(dict(_fields(msg)))
            sessions[_signed(s[1])] = _signed(s[2])
    return zxid, nodes, acls, sessions


def client_view(nodes: dict, acls: dict) -> dict:
    """The tree as ZooKeeper's DataNode.copyStat shows it to clients."""
    kids = {p: 0 for p in nodes}
    for p in nodes:
        if p != "/":
            kids[p.rsplit("/", 1)[0] or "/"] += 1
    out = {}
    for p, n in nodes.items():
        owner = n["ephemeral_owner"]
        u = owner & (2**64 - 1)
        special = owner == -(2**63) or (u >> 56 == 0xFF and u & 0x00FFFF0000000000 == 0)
        data = n["data"] or b""
        stat = {"czxid": n["czxid"], "mzxid": n["mzxid"], "pzxid": n["pzxid"],
                "ctime": n["ctime"], "mtime": n["mtime"], "version": n["version"],
                "cversion": 2 * n["cversion"] - kids[p], "aversion": n["aversion"],
                "dataLength": len(data), "numChildren": kids[p],
                "ephemeralOwner": 0 if special else owner}
        out[p] = (data, acls[n["acl_index"]], stat)
    return out


ZkRun = namedtuple("ZkRun", "workdir data_dir tree live_session ephemeral")


@pytest.fixture(scope="module")
def zk_run(tmp_path_factory):
    """A ZooKeeper data directory written by kazoo, the tree as read back before
    the server was stopped, and the session left open."""
    from kazoo.security import make_acl, make_digest_acl, OPEN_ACL_UNSAFE
    workdir = tmp_path_factory.mktemp("zookeeper")
    data_dir = workdir / "data"
    zk = start_zookeeper(workdir, data_dir, free_port())
    clients = []
    try:
        a = connect(zk.hosts)
        clients.append(a)
        alice_all = make_digest_acl(USER, PASSWORD, all=True)
        anyone_read = make_acl("world", "anyone", read=True)
        a.create("/app", b"hello")
        a.create("/app/config", b"v1")
        a.set("/app/config", b"v2")
        a.set("/app/config", b"v3")
        a.set_acls("/app/config", [alice_all, anyone_read])
        a.create("/app/deep/er/still", b"nested", makepath=True)
        for _ in range(3):
            a.create("/app/seq-", b"s", sequence=True)
        a.create("/empty", b"")
        a.create("/binary", bytes(range(256)))
        a.create("/secure", b"top-secret", acl=[alice_all])
        a.create("/mixed", b"m", acl=[alice_all, anyone_read])
        a.create("/gone", b"")
        a.delete("/gone")
        a.create("/churn", b"")
        for i in range(5):
            a.create(f"/churn/c{i}", b"")
        for i in range(0, 5, 2):
            a.delete(f"/churn/c{i}")
        create_container(a, "/cont", b"box")
        a.create("/cont/child", b"")
        create_ttl(a, "/ttl", b"t")
        tx = a.transaction()
        tx.create("/multi", b"")
        tx.create("/multi/a", b"x")
        tx.set_data("/app", b"hello2")
        tx.check("/app/config", 2)
        tx.commit()

        # An ephemeral of a session that closes (gone) and of one that stays open.
        c = connect(zk.hosts, auth=False)
        c.create("/app/eph-c", b"", ephemeral=True)
        c.stop()
        c.close()
        b = connect(zk.hosts, timeout=30.0, auth=False)
        clients.append(b)
        b.create("/app/eph-b", b"long", ephemeral=True)
        b.create("/app/eseq-", b"", ephemeral=True, sequence=True)
        live_session = b.client_id[0]

        # Enough writes to roll logs and take snapshots (snapCount=16) while the
        # tree keeps changing.
        a.create("/counter", b"0")
        for i in range(60):
            a.set("/counter", str(i).encode())
        a.create("/last", b"")

        tree = read_tree(a)
        assert tree["/app/eph-b"][2]["ephemeralOwner"] == live_session
        assert "/app/eph-c" not in tree
        assert tree["/ttl"][2]["ephemeralOwner"] == 0
        a.stop()  # session a closes; b stays open across the shutdown
        a.close()
    finally:
        code = zk.stop()
        for cl in clients:
            try:
                cl.stop()
                cl.close()
            except Exception:
                pass
    assert code is not None
    snaps = sorted((data_dir / "version-2").glob("snapshot.*"))
    logs = sorted((data_dir / "version-2").glob("log.*"))
    assert len(snaps) >= 2 and len(logs) >= 2, (snaps, logs)
    yield ZkRun(workdir, data_dir, tree, live_session, "/app/eph-b")


def run_import(zk_data: Path, corral_data: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(corral_binary()), "import-zk", "--zk-data-dir", str(zk_data),
         "--data-dir", str(corral_data), *extra],
        capture_output=True, text=True, timeout=120)


def test_import_summary(zk_run, tmp_path):
    out = run_import(zk_run.data_dir, tmp_path / "corral")
    assert out.returncode == 0, out.stderr
    assert f"nodes: {len(zk_run.tree)} " in out.stdout, out.stdout
    assert "warning" not in out.stdout, out.stdout
    snaps = list((tmp_path / "corral" / "corral-v1").glob("snapshot.*"))
    assert len(snaps) == 1
    last = int(snaps[0].name.split(".")[1], 16)
    assert f"last zxid: {last:#x}" in out.stdout
    # Every node's zxids are covered by the snapshot's.
    assert last >= max(max(s["czxid"], s["mzxid"], s["pzxid"]) for _, _, s in zk_run.tree.values())
    # A second import into the same directory is refused; --force replaces it.
    again = run_import(zk_run.data_dir, tmp_path / "corral")
    assert again.returncode == 1 and "--force" in again.stderr, again.stderr
    forced = run_import(zk_run.data_dir, tmp_path / "corral", "--force")
    assert forced.returncode == 0, forced.stderr


def test_imported_snapshot_holds_the_tree(zk_run, tmp_path):
    """The Corral snapshot, decoded here, is the tree kazoo read from ZooKeeper."""
    out = run_import(zk_run.data_dir, tmp_path / "corral")
    assert out.returncode == 0, out.stderr
    (snap,) = (tmp_path / "corral" / "corral-v1").glob("snapshot.*")
    zxid, nodes, acls, sessions = read_corral_snapshot(snap)
    assert_same_tree(client_view(nodes, acls), zk_run.tree)
    # Stored forms: raw owners of the container and the TTL node; null data kept apart
    # from empty.
    assert nodes["/cont"]["ephemeral_owner"] == -(2**63)
    assert nodes["/ttl"]["ephemeral_owner"] & (2**64 - 1) == (0xFF << 56) | TTL_MS
    assert nodes["/empty"]["data"] == b""
    assert sessions.get(zk_run.live_session) == 30000
    assert nodes[zk_run.ephemeral]["ephemeral_owner"] == zk_run.live_session


def test_import_from_every_snapshot(zk_run, tmp_path):
    """Starting from each (fuzzy) snapshot in turn and replaying the logs after it
    gives the same tree: what ZooKeeper does when newer snapshots are damaged."""
    v2 = zk_run.data_dir / "version-2"
    snaps = sorted(v2.glob("snapshot.*"), key=lambda p: int(p.name.split(".")[1], 16))
    for i, snap in enumerate(snaps):
        zk_copy = tmp_path / f"zk{i}"
        (zk_copy / "version-2").mkdir(parents=True)
        for f in v2.iterdir():
            if f not in snaps[i + 1:]:
                shutil.copy(f, zk_copy / "version-2" / f.name)
        out = run_import(zk_copy, tmp_path / f"corral{i}")
        assert out.returncode == 0, out.stderr
        assert f"read {zk_copy / 'version-2' / snap.name} " in out.stdout, out.stdout
        (corral_snap,) = (tmp_path / f"corral{i}" / "corral-v1").glob("snapshot.*")
        _, nodes, acls, _ = read_corral_snapshot(corral_snap)
        assert_same_tree(client_view(nodes, acls), zk_run.tree)


def test_zookeeper_restart_control(zk_run, tmp_path):
    """ZooKeeper itself, restarted on its data directory, serves the same tree:
    what the Corral server must reproduce."""
    data_dir = tmp_path / "data"
    shutil.copytree(zk_run.data_dir, data_dir)
    zk = start_zookeeper(tmp_path, data_dir, free_port())
    try:
        c = connect(zk.hosts)
        try:
            got = read_tree(c)
        finally:
            c.stop()
            c.close()
    finally:
        zk.stop()
    assert_same_tree(got, zk_run.tree)


def test_corral_serves_the_imported_tree(zk_run, tmp_path):
    corral_data = tmp_path / "corral-data"
    out = run_import(zk_run.data_dir, corral_data)
    assert out.returncode == 0, out.stderr
    server = start_corral(tmp_path / "corral", corral_data, free_port())
    try:
        c = connect(server.hosts)
        try:
            got = read_tree(c)
        finally:
            c.stop()
            c.close()
        assert_same_tree(got, zk_run.tree)
        assert got[zk_run.ephemeral][2]["ephemeralOwner"] == zk_run.live_session
    finally:
        server.stop()

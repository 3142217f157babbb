"""Scripted client scenarios, run against Apache ZooKeeper 3.8 and against Corral.

A scenario is a function ``f(ctx)`` that drives one fresh server through kazoo
(and a few raw requests from ``lowlevel``) and records what a client can see
with ``ctx.op`` / ``ctx.note`` / ``ctx.events``. ``run_scenario`` returns the
observations, normalised so that two correct servers give equal lists:

* errors are kazoo exception class names (``NoNodeError``, ...);
* zxids (czxid, mzxid, pzxid, multi results) become ``z<rank>`` where rank is the
  place of the value among the distinct non-zero zxids seen in that scenario
  (``z0`` stays ``z0``): servers may spend zxids on sessions differently, the
  order of changes must agree;
* ctime/mtime become ``T`` after sanity checks (within 10 minutes of the local
  clock; ``0`` stays ``0``; a node never modified has mtime == ctime);
* ephemeralOwner becomes ``session:<client label>`` for sessions of the
  scenario, other values stay literal (ZooKeeper shows 0 for containers and
  TTL nodes, although it stores a marker there internally);
* children lists are sorted (ZooKeeper returns them in hash order);
* watch notifications are grouped per client, in arrival order, as
  ``(type, state, path)``.

Versions: kazoo's transactions send plain create ops (opcode 1), answered
with the path only by 3.8 and 3.9 alike, so no Stat shows up there. A create2
op inside a multi is answered like a create (path only) by 3.8 and with path
and Stat by 3.9 (ZOOKEEPER-4026) and Corral; ``multi_create2`` sends such ops
and compares the paths only (``create_results_only_paths``). The zxid in the
header of a notification (-1 in 3.8, the change's zxid in 3.9) is not visible
to kazoo; the raw session in ``set_watches_on_reconnect`` ignores it too.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Callable, Dict, List

from kazoo.exceptions import KazooException, NoAuthError, ZookeeperError
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id, Permissions, make_digest_acl

import lowlevel as ll
from servers import ServerSpec, raw_handshake

SCENARIOS: Dict[str, Callable] = {}
SPECS: Dict[str, ServerSpec] = {}


def scenario(fn=None, *, spec: ServerSpec = None):
    def register(f):
        name = f.__name__
        assert name not in SCENARIOS, name
        SCENARIOS[name] = f
        if spec is not None:
            SPECS[name] = spec
        return f

    return register(fn) if fn else register


OPEN = [ACL(Permissions.ALL, Id("world", "anyone"))]


def digest(user, password):
    return base64.b64encode(hashlib.sha1(f"{user}:{password}".encode()).digest()).decode()


SUPER_PASSWORD = "interop-super"
SUPER_DIGEST = "super:" + digest("super", SUPER_PASSWORD)


# --------------------------------------------------------------------------
# recording and normalising


class Zxid(int):
    pass


class Time(int):
    pass


class Session(int):
    pass


class Ctx:
    def __init__(self, server, kazoo_factory):
        self.server = server
        self._factory = kazoo_factory
        self.clients = {}
        self.sessions = {}
        self.tap = ll.EventTap()
        self.obs: List[tuple] = []
        self.callbacks: Dict[str, list] = {}

    # clients -------------------------------------------------------------
    def client(self, label, timeout=10.0, auth=None):
        c = self._factory(self.server, timeout=timeout,
                          auth_data=auth or None)
        self.tap.tap(c, label)
        self.clients[label] = c
        self.sessions[c.client_id[0]] = label
        return c

    def watcher(self, label):
        """A kazoo watch callback that records (label, type, path)."""
        lst = self.callbacks.setdefault(label, [])

        def cb(event):
            lst.append((event.type, event.path))

        return cb

    # recording -----------------------------------------------------------
    def note(self, label, value):
        self.obs.append((label, value))

    def op(self, label, fn, *args, **kwargs):
        """Run one client call; record its result or its error class."""
        try:
            value = fn(*args, **kwargs)
        except (ZookeeperError, KazooException) as e:
            self.obs.append((label, "error", type(e).__name__))
            return e
        self.obs.append((label, "ok", value))
        return value

    def events(self, label="events", wait_for=0, unordered=False):
        """Record the watch notifications received so far.

        Every connected client syncs first: notifications of changes that
        were acknowledged before this call then precede the sync reply on
        each session. `wait_for` additionally waits for that many events
        (for changes not acknowledged to us, e.g. session expiry).
        `unordered`: sort each client's events (the order of the deletions
        of a closed session's ephemerals is unspecified: hash order in
        ZooKeeper)."""
        if wait_for:
            self.tap.wait_for(wait_for)
        for c in self.clients.values():
            if c.connected:
                c.sync("/")
        for c in self.clients.values():
            if c.connected:
                ll.drain_callbacks(c)
        wire = {}
        for e in self.tap.take():
            wire.setdefault(e.client, []).append((e.type, e.state, e.path))
        cbs = {k: v[:] for k, v in self.callbacks.items() if v}
        if unordered:
            wire = {k: sorted(v) for k, v in wire.items()}
            cbs = {k: sorted(v) for k, v in cbs.items()}
        for v in self.callbacks.values():
            v.clear()
        self.obs.append((label, {"wire": wire, "callbacks": cbs}))


_STAT_FIELDS = ZnodeStat._fields


def _raw(value, ctx):
    """Wrap the parts of a value that need normalising."""
    if isinstance(value, ZnodeStat):
        d = {}
        for k in _STAT_FIELDS:
            v = getattr(value, k)
            if k in ("czxid", "mzxid", "pzxid"):
                v = Zxid(v)
            elif k in ("ctime", "mtime"):
                v = Time(v)
            elif k == "ephemeralOwner":
                v = Session(v)
            d[k] = v
        return ("Stat", d, value)
    if isinstance(value, ACL):
        return ("ACL", value.perms, value.id.scheme, value.id.id)
    if isinstance(value, Exception):
        return type(value).__name__
    if isinstance(value, dict):
        return {k: _raw(v, ctx) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_raw(v, ctx) for v in value)
    return value


def _collect_zxids(value, acc):
    if isinstance(value, Zxid):
        acc.add(int(value))
    elif isinstance(value, dict):
        for v in value.values():
            _collect_zxids(v, acc)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_zxids(v, acc)


def _finish(value, ranks, sessions, problems):
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "Stat":
        d, stat = value[1], value[2]
        out = {}
        now_ms = time.time() * 1000
        for k, v in d.items():
            if isinstance(v, Zxid):
                out[k] = "z0" if v == 0 else f"z{ranks[int(v)]}"
            elif isinstance(v, Time):
                if v == 0:
                    out[k] = 0
                elif abs(now_ms - v) < 600_000:
                    out[k] = "T"
                else:
                    out[k] = "T?"
                    problems.append(f"{k}={int(v)} is not near now")
            elif isinstance(v, Session):
                out[k] = f"session:{sessions[int(v)]}" if int(v) in sessions else (
                    0 if v == 0 else hex(int(v) & 0xFFFFFFFFFFFFFFFF))
            else:
                out[k] = v
        if stat.mtime < stat.ctime:
            problems.append(f"mtime {stat.mtime} < ctime {stat.ctime}")
        if stat.czxid == stat.mzxid and stat.mtime != stat.ctime:
            problems.append("unmodified node with mtime != ctime")
        return out
    if isinstance(value, Zxid):
        return "z0" if value == 0 else f"z{ranks[int(value)]}"
    if isinstance(value, dict):
        return {k: _finish(v, ranks, sessions, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_finish(v, ranks, sessions, problems) for v in value]
    if isinstance(value, tuple):
        return tuple(_finish(v, ranks, sessions, problems) for v in value)
    return value


def run_scenario(name, server, kazoo_factory):
    ctx = Ctx(server, kazoo_factory)
    try:
        SCENARIOS[name](ctx)
    except Exception as e:  # the scenario could not go on: show how far it got
        import traceback
        where = traceback.extract_tb(e.__traceback__)
        line = next((f"{f.name}:{f.lineno}" for f in reversed(where) if f.filename == __file__), "?")
        ctx.obs.append(("SCENARIO ABORTED", f"{type(e).__name__}: {e}", f"at {line}"))
    raw = [_raw(o, ctx) for o in ctx.obs]
    zx = set()
    _collect_zxids(raw, zx)
    ranks = {z: i + 1 for i, z in enumerate(sorted(zx - {0}))}
    problems: List[str] = []
    out = [_finish(o, ranks, ctx.sessions, problems) for o in raw]
    for p in problems:
        out.append(("SANITY", p))
    for c in ctx.clients.values():
        try:
            c.stop()
        except Exception:
            pass
    return out


def format_observations(obs) -> List[str]:
    lines = []
    for o in obs:
        lines.append(" | ".join(repr(x) for x in o) if isinstance(o, tuple) else repr(o))
    return lines


def stat_of(c, path):
    return c.exists(path)


def whoami(c):
    """whoAmI, sorted: ZooKeeper lists a connection's identities in no
    particular order."""
    return sorted(ll.call(c, ll.WhoAmI()))


def create_results_only_paths(results):
    """ZooKeeper 3.8 answers a create2 op inside a multi like a create (path
    only); 3.9 (ZOOKEEPER-4026), and Corral, answer with path and Stat.
    Compare the paths only."""
    return [("create", r[1]) if r[0] in ("create", "create2") else r for r in results]


def exists_without_read(c, path):
    """exists on a node the client may not READ: 3.8 answers with the Stat, 3.9
    (ZOOKEEPER-2590), and Corral, with NoAuth. Record neither, so that the zxid ranks
    of the rest of the scenario stay comparable."""
    try:
        c.exists(path)
    except NoAuthError:
        pass
    return "exists: READ checked since 3.9"


def sorted_children(c, path, **kw):
    r = c.get_children(path, **kw)
    if kw.get("include_data"):
        return sorted(r[0]), r[1]
    return sorted(r)


# --------------------------------------------------------------------------
# the scenarios


@scenario
def root_and_system_nodes(ctx):
    c = ctx.client("a")
    ctx.op("ls /", sorted_children, c, "/")
    ctx.op("get /", c.get, "/")
    ctx.op("ls /zookeeper", sorted_children, c, "/zookeeper")
    ctx.op("get /zookeeper", c.get, "/zookeeper")
    ctx.op("get /zookeeper/quota", c.get, "/zookeeper/quota")
    ctx.op("ls /zookeeper/quota", sorted_children, c, "/zookeeper/quota")
    ctx.op("exists /zookeeper/config", stat_of, c, "/zookeeper/config")
    ctx.op("acl /", c.get_acls, "/")
    ctx.op("acl /zookeeper", c.get_acls, "/zookeeper")
    ctx.op("acl /zookeeper/config", c.get_acls, "/zookeeper/config")
    ctx.op("all children /", ll.call, c, ll.GetAllChildrenNumber("/"))


@scenario
def create_basic(ctx):
    c = ctx.client("a")
    ctx.op("create /a", c.create, "/a", b"hello")
    ctx.op("create2 /b", c.create, "/b", b"", include_data=True)
    ctx.op("create /a/x", c.create, "/a/x", b"x" * 10)
    ctx.op("get /a", c.get, "/a")
    ctx.op("get /a/x", c.get, "/a/x")
    ctx.op("exists /b", c.exists, "/b")
    ctx.op("ls /", sorted_children, c, "/")
    ctx.op("get /", c.get, "/")
    ctx.op("create None data", c.create, "/n", None)
    ctx.op("get None data", c.get, "/n")
    ctx.op("create makepath", c.create, "/m/p/q", b"leaf", makepath=True)
    ctx.op("get /m/p", c.get, "/m/p")


@scenario
def create_errors(ctx):
    c = ctx.client("a")
    c.create("/a", b"1")
    ctx.op("parent missing", c.create, "/x/y", b"")
    ctx.op("exists already", c.create, "/a", b"2")
    ctx.op("root", c.create, "/", b"")
    ctx.op("/zookeeper", c.create, "/zookeeper", b"")
    ctx.op("under /zookeeper", c.create, "/zookeeper/mine", b"")
    ctx.op("ls /zookeeper", sorted_children, c, "/zookeeper")
    ctx.op("get /a unchanged", c.get, "/a")
    ctx.op("empty acl", c.create, "/noacl", b"", acl=[])


@scenario
def bad_paths(ctx):
    c = ctx.client("a")
    c.create("/a", b"")
    for p in ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/.", "/..",
              "/a/.", "/a/..", "/a\x00b", "/a\x01", "/a\x7f", "/a\ue000", "/a\u00e9",
              "/.a", "/..a", "/a.", "/a b"]:
        # raw: kazoo would normalise the path before sending it
        ctx.op(f"create {p!r}", ll.call, c, ll.CreateAny(p, b"", OPEN, 0, 0, 1))
    for p in ["", "a", "/a/", "//a"]:
        ctx.op(f"get {p!r}", ll.call, c, ll.RawGetData(p))
        ctx.op(f"delete {p!r}", ll.call, c, ll.RawDelete(p, -1))
    ctx.op("sequential with trailing slash", ll.call, c, ll.CreateAny("/a/", b"", OPEN, 2, 0, 1))
    ctx.op("sequential '/a//'", ll.call, c, ll.CreateAny("/a//", b"", OPEN, 2, 0, 1))
    ctx.op("sequential '/a/.'", ll.call, c, ll.CreateAny("/a/.", b"", OPEN, 2, 0, 1))
    ctx.op("sequential ''", ll.call, c, ll.CreateAny("", b"", OPEN, 2, 0, 1))
    ctx.op("ls /", sorted_children, c, "/")
    ctx.op("ls /a", sorted_children, c, "/a")


@scenario
def sequential_names(ctx):
    c = ctx.client("a")
    c.create("/q", b"")
    for _ in range(3):
        ctx.op("seq n-", c.create, "/q/n-", b"", sequence=True)
    ctx.op("seq m-", c.create, "/q/m-", b"", sequence=True)
    ctx.op("plain", c.create, "/q/plain", b"")
    ctx.op("seq after plain", c.create, "/q/n-", b"", sequence=True)
    c.delete("/q/plain")
    ctx.op("seq after delete", c.create, "/q/n-", b"", sequence=True)
    ctx.op("failed create", c.create, "/q/n-0000000000", b"")
    ctx.op("seq after failed create", c.create, "/q/n-", b"", sequence=True)
    ctx.op("seq trailing slash", c.create, "/q/", b"", sequence=True)
    ctx.op("stat /q", c.exists, "/q")
    ctx.op("ls /q", sorted_children, c, "/q")


@scenario
def sequential_at_root(ctx):
    c = ctx.client("a")
    ctx.op("seq under /", c.create, "/s-", b"", sequence=True)
    ctx.op("seq under / again", c.create, "/s-", b"", sequence=True)
    ctx.op("stat /", c.exists, "/")


@scenario
def sequential_wraps_past_int_formats(ctx):
    # sequence numbers are 10-digit zero-padded decimals of the parent's cversion
    c = ctx.client("a")
    c.create("/w", b"")
    tx = c.transaction()
    for i in range(120):
        tx.create(f"/w/c{i}", b"")
    tx.commit()
    ctx.op("seq after 120 children", c.create, "/w/s", b"", sequence=True)
    ctx.op("stat /w", c.exists, "/w")


@scenario
def get_set_versions(ctx):
    c = ctx.client("a")
    c.create("/v", b"0")
    ctx.op("set v0", c.set, "/v", b"1", version=0)
    ctx.op("set stale v0", c.set, "/v", b"x", version=0)
    ctx.op("set any", c.set, "/v", b"2", version=-1)
    ctx.op("set v2", c.set, "/v", b"3", version=2)
    ctx.op("set v-2", c.set, "/v", b"x", version=-2)
    ctx.op("get", c.get, "/v")
    ctx.op("set missing", c.set, "/nope", b"", version=-1)
    ctx.op("set empty", c.set, "/v", b"")
    ctx.op("get empty", c.get, "/v")
    ctx.op("set None", c.set, "/v", None)
    ctx.op("get None", c.get, "/v")
    ctx.op("set same data", c.set, "/v", None)


@scenario
def delete_semantics(ctx):
    c = ctx.client("a")
    c.create("/d", b"")
    c.create("/d/c", b"")
    ctx.op("delete not empty", c.delete, "/d")
    ctx.op("delete bad version", c.delete, "/d/c", version=3)
    ctx.op("delete good version", c.delete, "/d/c", version=0)
    ctx.op("delete again", c.delete, "/d/c")
    ctx.op("stat /d after child delete", c.exists, "/d")
    ctx.op("delete /d", c.delete, "/d")
    ctx.op("delete /", c.delete, "/")
    ctx.op("delete /zookeeper", c.delete, "/zookeeper")
    ctx.op("delete /zookeeper/quota", c.delete, "/zookeeper/quota")
    ctx.op("delete missing parent", c.delete, "/x/y")
    ctx.op("recreate /d", c.create, "/d", b"again", include_data=True)
    ctx.op("recursive", c.create, "/r/a/b", b"", makepath=True)
    ctx.op("delete recursive", c.delete, "/r", recursive=True)
    ctx.op("exists /r", c.exists, "/r")


@scenario
def parent_stat_evolution(ctx):
    c = ctx.client("a")
    ctx.op("create /p", c.create, "/p", b"p", include_data=True)
    ctx.op("create /p/a", c.create, "/p/a", b"", include_data=True)
    ctx.op("stat /p", c.exists, "/p")
    ctx.op("set /p/a", c.set, "/p/a", b"changed")
    ctx.op("stat /p after child set", c.exists, "/p")
    ctx.op("create /p/b", c.create, "/p/b", b"")
    ctx.op("delete /p/a", c.delete, "/p/a")
    ctx.op("stat /p after delete", c.exists, "/p")
    ctx.op("set /p", c.set, "/p", b"pp")
    ctx.op("children2 /p", sorted_children, c, "/p", include_data=True)
    ctx.op("set_acls /p", c.set_acls, "/p", OPEN)
    ctx.op("stat /p after setACL", c.exists, "/p")
    ctx.op("stat /", c.exists, "/")


@scenario
def exists_and_children(ctx):
    c = ctx.client("a")
    ctx.op("exists missing", c.exists, "/e")
    c.create("/e", b"")
    for n in ["b", "a", "c", "aa", "z9", "Z", "0"]:
        c.create("/e/" + n, n.encode())
    ctx.op("ls", sorted_children, c, "/e")
    ctx.op("ls2", sorted_children, c, "/e", include_data=True)
    ctx.op("ls missing", c.get_children, "/nope")
    ctx.op("ls2 missing", c.get_children, "/nope", include_data=True)
    ctx.op("ls leaf", c.get_children, "/e/a")
    ctx.op("all children /e", ll.call, c, ll.GetAllChildrenNumber("/e"))
    ctx.op("all children missing", ll.call, c, ll.GetAllChildrenNumber("/nope"))


@scenario
def data_and_names(ctx):
    c = ctx.client("a")
    blob = bytes(range(256)) * 4
    big = b"\xab" * (512 * 1024)
    ctx.op("binary", c.create, "/bin", blob)
    ctx.op("get binary (sha1, stat)", lambda: (lambda d, st: (hashlib.sha1(d).hexdigest(), st))(*c.get("/bin")))
    ctx.op("big", c.create, "/big", big)
    data, stat = c.get("/big")
    ctx.note("big roundtrip", (data == big, stat.dataLength))
    for name in ["/ünï", "/日本語", "/with space", "/semi;colon", "/#hash", "/zookeeper2", "/-"]:
        ctx.op(f"create {name}", c.create, name, name.encode())
        ctx.op(f"get {name}", c.get, name)
    ctx.op("ls /", sorted_children, c, "/")


@scenario
def ephemeral_lifecycle(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    a.create("/eph", b"")
    ctx.op("a creates ephemeral", a.create, "/eph/e", b"mine", ephemeral=True, include_data=True)
    ctx.op("a creates ephemeral seq", a.create, "/eph/s-", b"", ephemeral=True, sequence=True)
    ctx.op("b sees", b.get, "/eph/e")
    ctx.op("b ephemerals", ll.call, b, ll.GetEphemerals("/"))
    ctx.op("a ephemerals", sorted, ll.call(a, ll.GetEphemerals("/")))
    ctx.op("a ephemerals prefix", ll.call, a, ll.GetEphemerals("/eph/s"))
    ctx.op("a ephemerals prefix /eph/e", ll.call, a, ll.GetEphemerals("/eph/e"))
    ctx.op("b exists-watch", b.exists, "/eph/e", watch=ctx.watcher("b"))
    ctx.op("b child-watch", sorted_children, b, "/eph", watch=ctx.watcher("b"))
    ctx.op("a sets", a.set, "/eph/e", b"changed")
    ctx.events("after set")
    b.exists("/eph/e", watch=ctx.watcher("b"))
    a.stop()
    a.close()
    ctx.events("after a closed", wait_for=2, unordered=True)
    ctx.op("gone", b.exists, "/eph/e")
    ctx.op("ls /eph", sorted_children, b, "/eph")
    ctx.op("stat /eph", b.exists, "/eph")
    ctx.op("b deletes then creates own", b.create, "/eph/e", b"b", ephemeral=True, include_data=True)


@scenario
def ephemeral_no_children(ctx):
    c = ctx.client("a")
    c.create("/e", b"", ephemeral=True)
    ctx.op("child", c.create, "/e/c", b"")
    ctx.op("seq child", c.create, "/e/s", b"", sequence=True)
    ctx.op("ephemeral child", c.create, "/e/x", b"", ephemeral=True)
    tx = c.transaction()
    tx.create("/ok", b"")
    tx.create("/e/c", b"")
    ctx.op("multi child", tx.commit)
    ctx.op("exists /ok", c.exists, "/ok")
    ctx.op("stat /e", c.exists, "/e")
    ctx.op("delete ephemeral", c.delete, "/e")


@scenario
def container_nodes(ctx):
    c = ctx.client("a")
    ctx.op("createContainer", ll.call, c, ll.CreateAny("/box", b"c", OPEN, ll.CONTAINER, 0, 19))
    ctx.op("stat", c.exists, "/box")
    ctx.op("child", c.create, "/box/x", b"")
    ctx.op("child ephemeral", c.create, "/box/e", b"", ephemeral=True)
    ctx.op("container flag via create", ll.call, c, ll.CreateAny("/box2", b"", OPEN, ll.CONTAINER, 0, 1))
    ctx.op("container flag via create2", ll.call, c, ll.CreateAny("/box3", b"", OPEN, ll.CONTAINER, 0, 15))
    ctx.op("createContainer non-container flags", ll.call, c, ll.CreateAny("/box4", b"", OPEN, 0, 0, 19))
    ctx.op("createContainer exists", ll.call, c, ll.CreateAny("/box", b"", OPEN, ll.CONTAINER, 0, 19))
    ctx.op("nested container", ll.call, c, ll.CreateAny("/box/inner", b"", OPEN, ll.CONTAINER, 0, 19))
    ctx.op("ls /box", sorted_children, c, "/box")
    ctx.op("delete child", c.delete, "/box/x")
    ctx.op("delete non-empty container", c.delete, "/box")
    ctx.op("ls /", sorted_children, c, "/")


@scenario
def ttl_nodes(ctx):
    c = ctx.client("a")
    ctx.op("ttl 10min", ll.call, c, ll.CreateAny("/t", b"t", OPEN, ll.PERSISTENT_WITH_TTL, 600000, 21))
    ctx.op("stat", c.exists, "/t")
    ctx.op("ttl seq", ll.call, c, ll.CreateAny("/ts-", b"", OPEN, ll.PERSISTENT_SEQUENTIAL_WITH_TTL, 600000, 21))
    ctx.op("ttl 0", ll.call, c, ll.CreateAny("/t0", b"", OPEN, ll.PERSISTENT_WITH_TTL, 0, 21))
    ctx.op("ttl negative", ll.call, c, ll.CreateAny("/tn", b"", OPEN, ll.PERSISTENT_WITH_TTL, -5, 21))
    ctx.op("ttl too big", ll.call, c, ll.CreateAny("/tb", b"", OPEN, ll.PERSISTENT_WITH_TTL, 1 << 40, 21))
    ctx.op("ttl max", ll.call, c, ll.CreateAny("/tm", b"", OPEN, ll.PERSISTENT_WITH_TTL, (1 << 40) - 1, 21))
    ctx.op("createTTL persistent flags", ll.call, c, ll.CreateAny("/tp", b"", OPEN, 0, 1000, 21))
    ctx.op("createTTL ephemeral flags", ll.call, c, ll.CreateAny("/te", b"", OPEN, ll.EPHEMERAL, 1000, 21))
    ctx.op("ttl flags via create", ll.call, c, ll.CreateAny("/tc", b"", OPEN, ll.PERSISTENT_WITH_TTL, 0, 1))
    ctx.op("ttl flags via create2", ll.call, c, ll.CreateAny("/tc2", b"", OPEN, ll.PERSISTENT_WITH_TTL, 0, 15))
    ctx.op("child of ttl", c.create, "/t/c", b"")
    ctx.op("stat /tm", c.exists, "/tm")
    ctx.op("ls /", sorted_children, c, "/")


@scenario(spec=ServerSpec(extended_types=False))
def ttl_disabled(ctx):
    c = ctx.client("a")
    ctx.op("ttl without extendedTypesEnabled", ll.call, c,
           ll.CreateAny("/t", b"", OPEN, ll.PERSISTENT_WITH_TTL, 60000, 21))
    ctx.op("container still fine", ll.call, c, ll.CreateAny("/box", b"", OPEN, ll.CONTAINER, 0, 19))
    ctx.op("ls /", sorted_children, c, "/")


@scenario
def multi_success(ctx):
    c = ctx.client("a")
    c.create("/m", b"0")
    c.create("/m/old", b"")
    tx = c.transaction()
    tx.create("/m/new", b"n")
    tx.create("/m/seq-", b"", sequence=True)
    tx.set_data("/m", b"1", version=0)
    tx.check("/m/old", 0)
    tx.delete("/m/old", version=0)
    tx.create("/m/new/child", b"")
    ctx.op("commit", tx.commit)
    ctx.op("ls /m", sorted_children, c, "/m")
    ctx.op("get /m", c.get, "/m")
    ctx.op("get /m/new", c.get, "/m/new")
    ctx.op("empty multi", c.transaction().commit)
    tx = c.transaction()
    tx.create("/m/eph", b"", ephemeral=True)
    tx.delete("/m/eph")
    tx.create("/m/eph", b"again")
    ctx.op("create-delete-create", tx.commit)
    ctx.op("stat /m/eph", c.exists, "/m/eph")


@scenario
def multi_failures(ctx):
    c = ctx.client("a")
    c.create("/f", b"0")
    c.create("/f/c", b"")
    cases = {
        "bad check middle": [("create", "/f/x"), ("check", "/f", 5), ("set", "/f", b"1")],
        "check missing": [("check", "/nope", 0), ("create", "/f/y")],
        "exists first": [("create", "/f/c"), ("create", "/f/z")],
        "delete not empty last": [("create", "/f/w"), ("set", "/f", b"2"), ("delete", "/f")],
        "bad version set": [("set", "/f/c", b"", 7)],
        "delete missing": [("delete", "/f/gone")],
        "no parent": [("create", "/f/p/q")],
        "dependent create": [("create", "/f/p"), ("create", "/f/p/q"), ("check", "/f/p/q", 1)],
        "ephemeral parent": [("create", "/f/e", True), ("create", "/f/e/c")],
    }
    for label, ops in cases.items():
        tx = c.transaction()
        for op in ops:
            if op[0] == "create":
                tx.create(op[1], b"", ephemeral=len(op) > 2 and op[2])
            elif op[0] == "check":
                tx.check(op[1], op[2])
            elif op[0] == "set":
                tx.set_data(op[1], op[2], version=op[3] if len(op) > 3 else -1)
            elif op[0] == "delete":
                tx.delete(op[1])
        ctx.op(label, tx.commit)
    ctx.op("ls /f unchanged", sorted_children, c, "/f")
    ctx.op("stat /f unchanged", c.exists, "/f")
    ctx.op("bad path in multi", ll.call, c, ll.Multi([ll.op_create("/f/ok"), ll.op_create("f/bad")], False))
    ctx.op("ls /f still unchanged", sorted_children, c, "/f")


@scenario
def multi_create2(ctx):
    c = ctx.client("a")
    ops = [
        ll.op_create("/c2", b"x", opcode=15),
        ll.op_create("/c2/s-", b"", flags=ll.PERSISTENT_SEQUENTIAL, opcode=15),
        ll.op_create("/c2/e", b"", flags=ll.EPHEMERAL, opcode=1),
        ll.op_create("/c2/box", b"", flags=ll.CONTAINER, opcode=19),
        ll.op_create("/c2/ttl", b"", flags=ll.PERSISTENT_WITH_TTL, opcode=21, ttl=600000),
        ll.op_set("/c2", b"y"),
        ll.op_check("/c2", 1),
        ll.op_delete("/c2/e"),
    ]
    ctx.op("multi with create2/container/ttl", lambda: create_results_only_paths(ll.call(c, ll.Multi(ops, False))))
    ctx.op("ls /c2", sorted_children, c, "/c2")
    ctx.op("stat /c2/box", c.exists, "/c2/box")
    ctx.op("stat /c2/ttl", c.exists, "/c2/ttl")
    ctx.op("read op inside multi", ll.call, c, ll.Multi([ll.op_get_data("/c2")], False))
    ctx.op("write op inside multiRead", ll.call, c, ll.Multi([ll.op_create("/c2/z")], True))


@scenario
def multi_read(ctx):
    c = ctx.client("a")
    c.create("/r", b"root")
    c.create("/r/a", b"A")
    c.create("/r/b", b"B")
    ops = [ll.op_get_children("/r"), ll.op_get_data("/r/a"), ll.op_get_data("/missing"),
           ll.op_get_children("/missing"), ll.op_get_data("/r/b")]
    res = ll.call(c, ll.Multi(ops, True))
    res = [("children", sorted(r[1])) if r[0] == "children" else r for r in res]
    ctx.note("multiRead", res)
    ctx.op("empty multiRead", ll.call, c, ll.Multi([], True))


@scenario
def acl_world_and_perms(ctx):
    c = ctx.client("a")
    P = Permissions
    for name, perms in [("r", P.READ), ("w", P.WRITE), ("c", P.CREATE), ("d", P.DELETE),
                        ("a", P.ADMIN), ("none", 0), ("rc", P.READ | P.CREATE)]:
        path = "/acl_" + name
        c.create(path, b"data", acl=[ACL(perms, Id("world", "anyone"))])
        ctx.op(f"{name}: get", c.get, path)
        if perms & P.READ:
            ctx.op(f"{name}: exists", c.exists, path)
        else:
            ctx.op(f"{name}: exists", exists_without_read, c, path)
        ctx.op(f"{name}: ls", c.get_children, path)
        ctx.op(f"{name}: set", c.set, path, b"x")
        ctx.op(f"{name}: create child", c.create, path + "/kid", b"")
        ctx.op(f"{name}: delete child", c.delete, path + "/kid")
        ctx.op(f"{name}: getACL", c.get_acls, path)
        ctx.op(f"{name}: setACL", c.set_acls, path, [ACL(perms, Id("world", "anyone"))])
    c.create("/dparent", b"", acl=[ACL(P.ALL & ~P.DELETE, Id("world", "anyone"))])
    c.create("/dparent/kid", b"")
    ctx.op("delete needs DELETE on parent", c.delete, "/dparent/kid")


@scenario
def acl_digest(ctx):
    owner = ctx.client("owner")
    other = ctx.client("other")
    ctx.op("add_auth owner", owner.add_auth, "digest", "alice:secret")
    acl = [make_digest_acl("alice", "secret", all=True)]
    ctx.op("create", owner.create, "/d", b"private", acl=acl)
    ctx.op("owner get", owner.get, "/d")
    ctx.op("other get", other.get, "/d")
    ctx.op("other exists", exists_without_read, other, "/d")
    ctx.op("other getACL", other.get_acls, "/d")
    ctx.op("other set", other.set, "/d", b"x")
    ctx.op("other ls", other.get_children, "/d")
    ctx.op("other wrong password", other.add_auth, "digest", "alice:wrong")
    ctx.op("other get (wrong pw)", other.get, "/d")
    ctx.op("other right password", other.add_auth, "digest", "alice:secret")
    ctx.op("other get (authed)", other.get, "/d")
    ctx.op("other whoami", whoami, other)
    ctx.op("owner whoami", whoami, owner)
    ctx.op("read-only digest + world read", owner.create, "/mixed", b"m",
           acl=[make_digest_acl("alice", "secret", all=True), ACL(Permissions.READ, Id("world", "anyone"))])
    fresh = ctx.client("fresh")
    ctx.op("fresh get mixed", fresh.get, "/mixed")
    ctx.op("fresh set mixed", fresh.set, "/mixed", b"no")
    ctx.op("acl of mixed", fresh.get_acls, "/mixed")


@scenario
def acl_auth_scheme(ctx):
    anon = ctx.client("anon")
    ctx.op("auth scheme without identity", anon.create, "/x", b"",
           acl=[ACL(Permissions.ALL, Id("auth", ""))])
    c = ctx.client("c")
    c.add_auth("digest", "bob:pw1")
    c.add_auth("digest", "carol:pw2")
    ctx.op("auth scheme with two identities", c.create, "/y", b"",
           acl=[ACL(Permissions.READ | Permissions.WRITE, Id("auth", ""))])
    ctx.op("stored acl", c.get_acls, "/y")
    ctx.op("auth scheme with id text", c.create, "/z", b"",
           acl=[ACL(Permissions.ALL, Id("auth", "ignored"))])
    ctx.op("stored acl z", c.get_acls, "/z")
    d = ctx.client("d", auth=[("digest", "carol:pw2")])
    ctx.op("carol reads", d.get, "/y")
    ctx.op("carol deletes child (no perm)", d.create, "/y/c", b"")
    ctx.op("anon reads", anon.get, "/y")


@scenario
def acl_ip(ctx):
    c = ctx.client("a")
    P = Permissions
    ctx.op("ip exact", c.create, "/ip1", b"1", acl=[ACL(P.ALL, Id("ip", "127.0.0.1"))])
    ctx.op("ip cidr 8", c.create, "/ip2", b"2", acl=[ACL(P.ALL, Id("ip", "127.0.0.0/8"))])
    ctx.op("ip other", c.create, "/ip3", b"3", acl=[ACL(P.ALL, Id("ip", "10.1.2.3"))])
    ctx.op("ip other cidr", c.create, "/ip4", b"4", acl=[ACL(P.ALL, Id("ip", "10.0.0.0/8"))])
    ctx.op("ip cidr 32", c.create, "/ip5", b"5", acl=[ACL(P.ALL, Id("ip", "127.0.0.1/32"))])
    ctx.op("ip cidr 0", c.create, "/ip6", b"6", acl=[ACL(P.ALL, Id("ip", "0.0.0.0/0"))])
    for n in range(1, 7):
        ctx.op(f"get /ip{n}", c.get, f"/ip{n}")
    ctx.op("ip garbage", c.create, "/ipx", b"", acl=[ACL(P.ALL, Id("ip", "not-an-ip"))])
    ctx.op("ip bad cidr", c.create, "/ipy", b"", acl=[ACL(P.ALL, Id("ip", "127.0.0.1/33"))])
    ctx.op("acl /ip2", c.get_acls, "/ip2")
    ctx.op("whoami", whoami, c)


@scenario
def acl_invalid(ctx):
    c = ctx.client("a")
    P = Permissions
    cases = {
        "unknown scheme": [ACL(P.ALL, Id("kerberos", "x"))],
        "digest no colon": [ACL(P.ALL, Id("digest", "nocolon"))],
        "digest empty": [ACL(P.ALL, Id("digest", ""))],
        "world other id": [ACL(P.ALL, Id("world", "someone"))],
        "perms zero": [ACL(0, Id("world", "anyone"))],
        "perms beyond ALL": [ACL(0xFF, Id("world", "anyone"))],
        "duplicate": [ACL(P.READ, Id("world", "anyone")), ACL(P.READ, Id("world", "anyone"))],
        "super scheme": [ACL(P.ALL, Id("super", "x"))],
    }
    for label, acl in cases.items():
        path = "/" + label.replace(" ", "_")
        r = ctx.op(label, c.create, path, b"", acl=acl)
        if isinstance(r, str):
            ctx.op(label + " stored", c.get_acls, path)
    c.create("/ok", b"")
    ctx.op("setACL invalid", c.set_acls, "/ok", [ACL(P.ALL, Id("kerberos", "x"))])
    ctx.op("setACL empty", c.set_acls, "/ok", [])
    ctx.op("acl /ok", c.get_acls, "/ok")


@scenario
def acl_versions(ctx):
    c = ctx.client("a")
    c.create("/v", b"")
    ro = [ACL(Permissions.READ, Id("world", "anyone"))]
    ctx.op("setACL v0", c.set_acls, "/v", OPEN, version=0)
    ctx.op("setACL stale", c.set_acls, "/v", OPEN, version=0)
    ctx.op("setACL v1", c.set_acls, "/v", ro, version=1)
    ctx.op("getACL", c.get_acls, "/v")
    ctx.op("setACL without ADMIN", c.set_acls, "/v", OPEN)
    ctx.op("setACL missing", c.set_acls, "/missing", OPEN)
    ctx.op("getACL missing", c.get_acls, "/missing")
    ctx.op("check aversion in multi", ll.call, c, ll.Multi([ll.op_check("/v", 0)], False))


@scenario(spec=ServerSpec(super_digest=SUPER_DIGEST))
def acl_super(ctx):
    c = ctx.client("a")
    c.add_auth("digest", "alice:pw")
    c.create("/locked", b"s", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    su = ctx.client("su")
    ctx.op("before super", su.get, "/locked")
    ctx.op("super auth", su.add_auth, "digest", "super:" + SUPER_PASSWORD)
    ctx.op("super get", su.get, "/locked")
    ctx.op("super set", su.set, "/locked", b"t")
    ctx.op("super create child", su.create, "/locked/c", b"")
    ctx.op("super setACL", su.set_acls, "/locked", OPEN)
    ctx.op("super whoami", whoami, su)


@scenario
def auth_failures(ctx):
    c = ctx.client("a")
    ctx.op("digest without colon", c.add_auth, "digest", "nocolon")
    ctx.op("still usable?", c.exists, "/")
    d = ctx.client("b")
    ctx.op("unknown scheme", d.add_auth, "nosuchscheme", "x")
    # What follows an auth failure on the client side (AUTH_FAILED state,
    # reconnection) races with the server closing the connection; only the
    # reply itself is compared.
    d.stop()
    e = ctx.client("c")
    ctx.op("other sessions unaffected", e.exists, "/")


@scenario
def watch_data_one_shot(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/w", b"0")
    ctx.op("get+watch", a.get, "/w", watch=ctx.watcher("a"))
    b.set("/w", b"1")
    b.set("/w", b"2")
    ctx.events("two sets, one event")
    ctx.op("get again", a.get, "/w", watch=ctx.watcher("a"))
    ctx.op("same path watched twice", a.get, "/w", watch=ctx.watcher("a2"))
    b.set("/w", b"3")
    ctx.events("third set")
    b.set("/w", b"4")
    ctx.events("no watch left")
    a.get("/w", watch=ctx.watcher("a"))
    a.set("/w", b"own write")
    ctx.events("own write triggers own watch")


@scenario
def watch_exists(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    ctx.op("exists+watch missing", a.exists, "/x", watch=ctx.watcher("a"))
    b.create("/x", b"")
    ctx.events("created")
    ctx.op("exists+watch present", a.exists, "/x", watch=ctx.watcher("a"))
    b.set("/x", b"1")
    ctx.events("changed")
    a.exists("/x", watch=ctx.watcher("a"))
    b.delete("/x")
    ctx.events("deleted")
    b.create("/x", b"")
    ctx.events("recreated: nothing")
    ctx.op("get+watch missing", a.get, "/y", watch=ctx.watcher("a"))
    b.create("/y", b"")
    ctx.events("getData watch on missing node is not set")


@scenario
def watch_children(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/p", b"")
    b.create("/p/c1", b"")
    ctx.op("ls+watch", sorted_children, a, "/p", watch=ctx.watcher("a"))
    b.set("/p/c1", b"data")
    b.create("/p/c1/g", b"")
    b.set("/p", b"parent data")
    ctx.events("no child event for data / grandchild / parent data")
    b.create("/p/c2", b"")
    ctx.events("child created")
    a.get_children("/p", watch=ctx.watcher("a"))
    b.delete("/p/c2")
    ctx.events("child deleted")
    ctx.op("ls2+watch", sorted_children, a, "/p", watch=ctx.watcher("a"), include_data=True)
    b.create("/p/s-", b"", sequence=True)
    ctx.events("sequential child")
    ctx.op("ls+watch missing", a.get_children, "/none", watch=ctx.watcher("a"))
    b.create("/none", b"")
    ctx.events("child watch on missing node is not set")


@scenario
def watch_delete_fans_out(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/d", b"")
    b.create("/d/n", b"")
    a.get("/d/n", watch=ctx.watcher("a-data"))
    a.exists("/d/n", watch=ctx.watcher("a-exists"))
    a.get_children("/d/n", watch=ctx.watcher("a-child"))
    a.get_children("/d", watch=ctx.watcher("a-parent"))
    b.delete("/d/n")
    ctx.events("delete with data+exists+child watches and parent child watch")
    b.create("/d/n", b"")
    a.get_children("/d/n", watch=ctx.watcher("a-child"))
    b.create("/d/n/k", b"")
    b.delete("/d/n/k")
    ctx.events("child watch only")


@scenario
def watch_order_multi(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    for p in ["/o", "/o/x", "/o/y", "/o/z"]:
        b.create(p, b"")
    for p in ["/o/x", "/o/y", "/o/z"]:
        a.get(p, watch=ctx.watcher("a"))
    a.get_children("/o", watch=ctx.watcher("a"))
    a.exists("/o/new", watch=ctx.watcher("a"))
    tx = b.transaction()
    tx.set_data("/o/z", b"1")
    tx.create("/o/new", b"")
    tx.delete("/o/x")
    tx.set_data("/o/y", b"1")
    b.transaction  # noqa
    ctx.op("multi", tx.commit)
    ctx.events("events of one multi, in op order")
    a.get("/o/y", watch=ctx.watcher("a"))
    tx = b.transaction()
    tx.set_data("/o/y", b"2")
    tx.check("/o/y", 99)
    ctx.op("failed multi", tx.commit)
    ctx.events("failed multi fires nothing")


@scenario
def watch_sees_event_before_data(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/s", b"v1")
    order = []
    a.get("/s", watch=lambda e: order.append(("event", e.type)))
    b.set("/s", b"v2")
    # A sync then a read: the notification arrives before the read's reply.
    a.sync("/s")
    data, _ = a.get("/s")
    ll.drain_callbacks(a)
    order.append(("read", data))
    ctx.note("order", order)
    ctx.events("wire")


@scenario
def persistent_watch(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/pw", b"")
    ctx.op("addWatch persistent", ll.call, a, ll.AddWatch("/pw", ll.ADD_WATCH_PERSISTENT))
    b.set("/pw", b"1")
    b.set("/pw", b"2")
    b.create("/pw/c", b"")
    b.set("/pw/c", b"x")
    b.create("/pw/c/g", b"")
    b.delete("/pw/c/g")
    b.delete("/pw/c")
    ctx.events("persistent: repeated events, no grandchild")
    b.delete("/pw")
    b.create("/pw", b"")
    ctx.events("persistent survives delete")
    ctx.op("addWatch on missing node", ll.call, a, ll.AddWatch("/later", ll.ADD_WATCH_PERSISTENT))
    b.create("/later", b"")
    ctx.events("persistent on missing node")


@scenario
def persistent_recursive_watch(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/rw", b"")
    ctx.op("addWatch recursive", ll.call, a, ll.AddWatch("/rw", ll.ADD_WATCH_PERSISTENT_RECURSIVE))
    b.create("/rw/a", b"")
    b.create("/rw/a/b", b"")
    b.set("/rw/a/b", b"1")
    b.set("/rw", b"top")
    b.delete("/rw/a/b")
    tx = b.transaction()
    tx.create("/rw/a/m1", b"")
    tx.create("/rw/a/m2", b"")
    tx.commit()
    b.create("/rwx", b"")
    ctx.events("recursive: descendants, no child events, sibling prefix not matched")
    ctx.op("standard watch too", a.get_children, "/rw/a", watch=ctx.watcher("a"))
    b.create("/rw/a/n", b"")
    ctx.events("recursive + child watch")


@scenario
def sync_and_session(ctx):
    a = ctx.client("a")
    ctx.op("sync /", a.sync, "/")
    ctx.op("sync missing", a.sync, "/missing")
    a.create("/s", b"")
    ctx.op("sync /s", a.sync, "/s")
    ctx.op("whoami", whoami, a)


@scenario
def session_close_cleans_up(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/grp", b"")
    for i in range(3):
        a.create(f"/grp/m{i}", b"", ephemeral=True)
    a.create("/grp/s-", b"", ephemeral=True, sequence=True)
    ctx.op("ls before", sorted_children, b, "/grp", include_data=True)
    b.get_children("/grp", watch=ctx.watcher("b"))
    for i in range(3):
        b.exists(f"/grp/m{i}", watch=ctx.watcher("b"))
    a.stop()
    ctx.events("after close", wait_for=4, unordered=True)
    ctx.op("ls after", sorted_children, b, "/grp", include_data=True)


@scenario
def handshake_and_timeouts(ctx):
    # Defaults: minSessionTimeout = 2*tickTime, maxSessionTimeout = 20*tickTime.
    port = ctx.server.port
    for t in (1, 3999, 4000, 10000, 40000, 40001, 3600000):
        ctx.note(f"timeout {t}", raw_handshake(port, t))
    ctx.note("old client without readOnly byte", raw_handshake(port, 10000, with_readonly=False))
    ctx.note("unknown session id", raw_handshake(port, 10000, session_id=0x1234567))


@scenario(spec=ServerSpec(min_session_timeout=3000, max_session_timeout=7000))
def session_timeout_bounds(ctx):
    port = ctx.server.port
    for t in (1000, 5000, 60000):
        ctx.note(f"timeout {t}", raw_handshake(port, t))


@scenario
def large_fanout(ctx):
    c = ctx.client("a")
    c.create("/big", b"")
    tx = c.transaction()
    for i in range(300):
        tx.create(f"/big/n{i:03d}", b"%d" % i)
    ctx.note("multi size", len(tx.commit()))
    ctx.op("count", lambda: len(c.get_children("/big")))
    ctx.op("stat", c.exists, "/big")
    ctx.op("all children", ll.call, c, ll.GetAllChildrenNumber("/big"))
    ctx.op("all children /", ll.call, c, ll.GetAllChildrenNumber("/"))
    ctx.op("delete recursive", c.delete, "/big", recursive=True)
    ctx.op("gone", c.exists, "/big")


@scenario
def remove_watches(ctx):
    a = ctx.client("a")
    b = ctx.client("b")
    b.create("/rm", b"")
    a.get("/rm", watch=ctx.watcher("a"))
    a.get_children("/rm", watch=ctx.watcher("a"))
    ctx.op("checkWatches data", ll.call, a, ll.CheckWatches("/rm", 2))
    ctx.op("remove data watch", ll.call, a, ll.RemoveWatches("/rm", 2))
    ctx.op("remove data watch again", ll.call, a, ll.RemoveWatches("/rm", 2))
    ctx.op("checkWatches data after removal", ll.call, a, ll.CheckWatches("/rm", 2))
    b.set("/rm", b"1")
    ctx.events("data watch removed: no event")
    b.create("/rm/c", b"")
    ctx.events("child watch still there")
    a.get_children("/rm", watch=ctx.watcher("a"))
    a.exists("/rm", watch=ctx.watcher("a"))
    ctx.op("remove any", ll.call, a, ll.RemoveWatches("/rm", 3))
    b.create("/rm/d", b"")
    b.set("/rm", b"2")
    ctx.events("all removed")
    ctx.op("remove on path without watches", ll.call, a, ll.RemoveWatches("/nowatch", 3))
    ctx.op("remove child watch, none set", ll.call, a, ll.RemoveWatches("/rm", 1))
    ctx.op("addWatch persistent", ll.call, a, ll.AddWatch("/rm", ll.ADD_WATCH_PERSISTENT))
    ctx.op("remove persistent via any", ll.call, a, ll.RemoveWatches("/rm", 3))
    b.set("/rm", b"3")
    ctx.events("persistent removed")


@scenario
def set_watches_on_reconnect(ctx):
    """The Java client's reconnection: same session on a new socket, watches
    re-armed with SetWatches relative to the last zxid the client saw."""
    b = ctx.client("b")
    for p in ("/w", "/u", "/p", "/gone"):
        b.create(p, b"")
    raw = ll.RawSession(ctx.server.port)
    assert raw.connect()
    ctx.note("getData+watch /w", raw.get_data("/w", watch=True))
    ctx.note("getData+watch /u", raw.get_data("/u", watch=True))
    ctx.note("getData+watch /gone", raw.get_data("/gone", watch=True))
    ctx.note("exists+watch /new", raw.exists("/new", watch=True))
    ctx.note("exists+watch /never", raw.exists("/never", watch=True))
    ctx.note("children+watch /p", raw.get_children("/p", watch=True))
    raw.drop()
    # changes while the client is away
    b.set("/w", b"changed")
    b.create("/new", b"")
    b.create("/p/c", b"")
    b.delete("/gone")
    raw2 = ll.RawSession(ctx.server.port)
    raw2.session_id, raw2.passwd, raw2.last_zxid = raw.session_id, raw.passwd, raw.last_zxid
    ctx.note("reconnect same session", raw2.connect())
    ctx.note("setWatches", raw2.set_watches(data=["/w", "/u", "/gone"], exist=["/new", "/never"], child=["/p"]))
    raw2.sync()
    ctx.note("events fired by setWatches", sorted(raw2.events))
    raw2.events.clear()
    b.set("/u", b"later")
    b.create("/never", b"")
    b.set("/w", b"again")
    raw2.sync()
    ctx.note("re-armed watches fire later", raw2.events)
    raw2.close()

"""Start and stop ZooKeeper-protocol servers for the interop suite.

Two kinds of server speak the same client protocol here:

* ``zookeeper`` -- Apache ZooKeeper 3.8 from Debian's ``zookeeper`` package, run
  with ``java ... org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg``.
* ``corral`` -- the binary under test, ``corral server zoo.cfg``. The environment
  variable ``INTEROP_CORRAL_CMD`` overrides it: the value ``zookeeper`` runs a
  second Apache ZooKeeper in its place (used to validate the suite itself), any
  other value is a shell-style command line in which ``{cfg}`` is replaced by
  the path of the generated zoo.cfg. ``INTEROP_CORRAL_BIN`` names the binary
  (default: ``target/release/corral``, else ``target/debug/corral``).

Every server gets its own directory (zoo.cfg, data/, log file), listens on
127.0.0.1 only, is declared ready once it answers ``ruok`` with ``imok``, and is
stopped by PID with SIGTERM (SIGKILL only if it does not exit in time).

Ensembles: ``ServerSpec`` carries ``myid`` and ``peers`` (``server.N`` lines);
``start_server`` writes ``myid`` into the data dir when given. A 3-node fixture
needs only to allocate the ports for all peers first, then start each member
with the same ``peers`` list (see ``allocate_ensemble``). ``start_ensemble``
does that and returns an ``Ensemble`` once its members have settled into roles
(one ``Mode: leader``, the rest ``Mode: follower`` in ``srvr``); the
``Ensemble`` kills, restarts and stops members and waits for a new leader.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent

# Where Debian puts ZooKeeper. `dpkg -L zookeeper libzookeeper-java` is
# consulted first; these are the fallbacks.
_ZK_JAR_FALLBACK = "/usr/share/java/zookeeper.jar"
_ZKCLI_FALLBACK = "/usr/share/zookeeper/bin/zkCli.sh"

READY_TIMEOUT_S = float(os.environ.get("INTEROP_READY_TIMEOUT", "30"))
STOP_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# ports and 4lw


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> List[int]:
    """n distinct ports that were free on 127.0.0.1 a moment ago (all bound
    at once, so the kernel cannot hand out the same one twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def four_letter(port: int, cmd: str, timeout: float = 2.0, host: str = "127.0.0.1") -> str:
    """Send a four-letter word and return everything the server sends back."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd.encode("ascii"))
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode("utf-8", "replace")


def raw_handshake(port: int, timeout_ms: int = 10000, with_readonly: bool = True,
                  session_id: int = 0, passwd: bytes = b"\0" * 16, close: bool = True,
                  host: str = "127.0.0.1"):
    """Open a session with a hand-made ConnectRequest; return what the
    ConnectResponse says (or ("closed",) if the server hung up), then close
    the session with closeSession."""
    body = struct.pack("!iqiq", 0, 0, timeout_ms, session_id) + struct.pack("!i", len(passwd)) + passwd
    if with_readonly:
        body += b"\0"
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack("!i", len(body)) + body)

        def read_exact(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    return None
                buf += chunk
            return buf

        hdr = read_exact(4)
        if hdr is None:
            return ("closed",)
        n = struct.unpack("!i", hdr)[0]
        buf = read_exact(n)
        if buf is None or n < 20:
            return ("short", n)
        proto, to, sid = struct.unpack_from("!iiq", buf, 0)
        plen = struct.unpack_from("!i", buf, 16)[0]
        rest = buf[20 + max(plen, 0):]
        if close and to > 0:
            # closeSession (-11) with xid 1, then wait for the reply
            s.sendall(struct.pack("!iii", 8, 1, -11))
            try:
                read_exact(4 + 16)
            except OSError:
                pass
        return {"frame_len": n, "proto": proto, "timeout": to, "sid_nonzero": sid != 0,
                "passwd_len": plen, "trailing": rest.hex()}


def accepts_sessions(port: int) -> bool:
    try:
        r = raw_handshake(port, 10000)
    except OSError:
        return False
    return isinstance(r, dict) and r["timeout"] > 0


def is_ok(port: int) -> bool:
    try:
        return four_letter(port, "ruok", timeout=1.0) == "imok"
    except OSError:
        return False


# --------------------------------------------------------------------------
# locating Apache ZooKeeper


def _dpkg_files(pkg: str) -> List[str]:
    try:
        out = subprocess.run(
            ["dpkg", "-L", pkg], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        return []
    return [l.strip() for l in out.splitlines() if l.strip()]


def zookeeper_classpath() -> str:
    """zookeeper.jar (its manifest names its dependencies) plus an slf4j
    binding for log4j 1.2 so the server logs to our file."""
    jar = None
    for f in _dpkg_files("libzookeeper-java"):
        if f.endswith("/zookeeper.jar"):
            jar = f
    jar = jar or os.environ.get("INTEROP_ZK_JAR") or _ZK_JAR_FALLBACK
    if not os.path.exists(jar):
        raise ServerError(f"ZooKeeper jar not found ({jar}); apt-get install zookeeper")
    cp = [jar]
    for name in ("slf4j-log4j12.jar", "log4j-1.2.jar"):
        p = os.path.join(os.path.dirname(jar), name)
        if os.path.exists(p):
            cp.append(p)
    return ":".join(cp)


def zkcli_path() -> str:
    for f in _dpkg_files("zookeeper"):
        if f.endswith("/bin/zkCli.sh"):
            return f
    if os.path.exists(_ZKCLI_FALLBACK):
        return _ZKCLI_FALLBACK
    raise ServerError("zkCli.sh not found; apt-get install zookeeper")


def java_path() -> str:
    return os.environ.get("JAVA", "java")


# --------------------------------------------------------------------------
# configuration


@dataclasses.dataclass
class ServerSpec:
    """What a server should look like. Keys are the zoo.cfg keys of the
    contract; both kinds of server get them."""

    client_port: int = 0  # 0: pick a free one
    tick_time: int = 2000
    min_session_timeout: Optional[int] = None
    max_session_timeout: Optional[int] = None
    max_client_cnxns: Optional[int] = None
    four_letter_whitelist: str = "*"
    extended_types: bool = True
    super_digest: Optional[str] = None  # "super:<base64 sha1>"
    jute_maxbuffer: Optional[int] = None
    extra: Dict[str, str] = dataclasses.field(default_factory=dict)
    # Ensemble membership (empty: standalone).
    myid: Optional[int] = None
    peers: Dict[int, str] = dataclasses.field(default_factory=dict)  # id -> "127.0.0.1:q:e[:role]"


def allocate_ensemble(n: int = 3) -> List[ServerSpec]:
    """Specs for an n-node ensemble on loopback, ports allocated (all
    distinct)."""
    ports = free_ports(3 * n)
    peers = {i: f"127.0.0.1:{ports[3 * (i - 1)]}:{ports[3 * (i - 1) + 1]}" for i in range(1, n + 1)}
    return [
        ServerSpec(client_port=ports[3 * (i - 1) + 2], myid=i, peers=dict(peers))
        for i in range(1, n + 1)
    ]


def common_cfg(spec: ServerSpec, data_dir: Path) -> Dict[str, str]:
    cfg = {
        "tickTime": str(spec.tick_time),
        "dataDir": str(data_dir),
        "clientPort": str(spec.client_port),
        "clientPortAddress": "127.0.0.1",
        "4lw.commands.whitelist": spec.four_letter_whitelist,
        "extendedTypesEnabled": "true" if spec.extended_types else "false",
    }
    if spec.min_session_timeout is not None:
        cfg["minSessionTimeout"] = str(spec.min_session_timeout)
    if spec.max_session_timeout is not None:
        cfg["maxSessionTimeout"] = str(spec.max_session_timeout)
    if spec.max_client_cnxns is not None:
        cfg["maxClientCnxns"] = str(spec.max_client_cnxns)
    if spec.jute_maxbuffer is not None:
        cfg["jute.maxbuffer"] = str(spec.jute_maxbuffer)
    if spec.peers:
        cfg["initLimit"] = "10"
        cfg["syncLimit"] = "5"
        for sid, addr in sorted(spec.peers.items()):
            cfg[f"server.{sid}"] = addr
    cfg.update(spec.extra)
    return cfg


def write_cfg(path: Path, cfg: Dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))


# --------------------------------------------------------------------------
# processes


_LIVE = set()


@atexit.register
def _stop_leftovers():
    """Safety net: no server outlives the test process (they run in their
    own session, so a signal to our process group would not reach them)."""
    for server in list(_LIVE):
        try:
            server.stop(timeout=5)
        except Exception:
            pass


class ServerProcess:
    """A running server: its kind, port, directory and process."""

    def __init__(self, kind: str, spec: ServerSpec, workdir: Path, argv: List[str],
                 env: Dict[str, str], log_path: Path, impl: str = None):
        self.kind = kind
        self.impl = impl or kind
        self.spec = spec
        self.port = spec.client_port
        self.workdir = workdir
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None
        self.stopped_by_kill = False
        self.exit_code_before_ready = False

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=str(self.workdir),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        _LIVE.add(self)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.exit_code_before_ready = True
                raise ServerError(
                    f"{self.kind} exited with {self.proc.returncode} before serving\n"
                    + self.log_tail()
                )
            # Apache ZooKeeper answers imok before its request pipeline is
            # up (connections are then dropped with "ZooKeeperServer not
            # running"), so for it a session must also be accepted.
            if is_ok(self.port) and (self.impl != "zookeeper" or accepts_sessions(self.port)):
                return
            time.sleep(0.05)
        raise ServerError(f"{self.kind} on port {self.port} not ready after {timeout}s\n" + self.log_tail())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> Optional[int]:
        """SIGTERM to our own PID; SIGKILL if it does not exit in time."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stopped_by_kill = True
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self.exit_code = self.proc.returncode
        _LIVE.discard(self)
        return self.exit_code

    def kill(self) -> None:
        """SIGKILL (for fault tests)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        _LIVE.discard(self)

    def log_tail(self, n: int = 40) -> str:
        texts = []
        for p in [self.log_path] + sorted(Path(self.workdir).glob("*.log")):
            try:
                lines = Path(p).read_text(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                texts.append(f"--- {p} (last {n} lines)\n" + "\n".join(lines[-n:]))
        return "\n".join(dict.fromkeys(texts))

    def __repr__(self):
        return f"<{self.kind} pid={self.pid} port={self.port} dir={self.workdir}>"


_LOG4J_TEMPLATE = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={path}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n
"""


def _zookeeper_argv(spec: ServerSpec, workdir: Path, data_dir: Path):
    cfg = common_cfg(spec, data_dir)
    # ZooKeeper-only keys: no AdminServer on :8080, nothing else listening.
    cfg["admin.enableServer"] = "false"
    cfg_path = workdir / "zoo.cfg"
    write_cfg(cfg_path, cfg)
    log4j = workdir / "log4j.properties"
    log4j.write_text(_LOG4J_TEMPLATE.format(path=workdir / "zookeeper.log"))
    props = [
        f"-Dlog4j.configuration=file:{log4j}",
        "-Dzookeeper.extendedTypesEnabled=" + ("true" if spec.extended_types else "false"),
        "-Dzookeeper.4lw.commands.whitelist=" + spec.four_letter_whitelist,
        "-Dzookeeper.admin.enableServer=false",
        "-Dzookeeper.jmx.log4j.disable=true",
    ]
    if spec.super_digest:
        props.append("-Dzookeeper.DigestAuthenticationProvider.superDigest=" + spec.super_digest)
    if spec.jute_maxbuffer is not None:
        props.append(f"-Djute.maxbuffer={spec.jute_maxbuffer}")
    argv = [
        java_path(), "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Djava.net.preferIPv4Stack=true", *props,
        "-cp", zookeeper_classpath(),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg_path),
    ]
    return argv


def corral_binary() -> Path:
    env = os.environ.get("INTEROP_CORRAL_BIN")
    if env:
        return Path(env)
    for p in (REPO_ROOT / "target/release/corral", REPO_ROOT / "target/debug/corral"):
        if p.exists():
            return p
    return REPO_ROOT / "target/release/corral"


def corral_is_zookeeper() -> bool:
    return os.environ.get("INTEROP_CORRAL_CMD", "").strip().lower() == "zookeeper"


def _corral_argv(spec: ServerSpec, workdir: Path, data_dir: Path):
    cfg = common_cfg(spec, data_dir)
    if spec.super_digest:
        cfg["superDigest"] = spec.super_digest
    cfg_path = workdir / "zoo.cfg"
    write_cfg(cfg_path, cfg)
    override = os.environ.get("INTEROP_CORRAL_CMD", "").strip()
    if override:
        return [a.replace("{cfg}", str(cfg_path)) for a in shlex.split(override)]
    binary = corral_binary()
    if not binary.exists():
        raise ServerError(f"corral binary {binary} missing; run cargo build --release")
    return [str(binary), "server", str(cfg_path)]


def start_server(kind: str, workdir: Path, spec: Optional[ServerSpec] = None,
                 wait: bool = True, attempts: int = 3) -> ServerProcess:
    """Start one server of `kind` ("zookeeper" or "corral") in `workdir`.

    A port chosen by `free_port` can be taken by someone else before the
    server binds it, so a standalone server whose process dies before it is
    ready is retried on a fresh port."""
    spec = dataclasses.replace(spec) if spec else ServerSpec()
    if kind == "corral" and corral_is_zookeeper():
        impl = "zookeeper"
    else:
        impl = kind
    last_error = None
    for attempt in range(attempts):
        if spec.client_port == 0 or (attempt > 0 and not spec.peers):
            spec.client_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        data_dir = workdir / "data"
        data_dir.mkdir(exist_ok=True)
        if spec.myid is not None:
            (data_dir / "myid").write_text(f"{spec.myid}\n")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        if impl == "zookeeper":
            argv = _zookeeper_argv(spec, workdir, data_dir)
        elif impl == "corral":
            argv = _corral_argv(spec, workdir, data_dir)
        else:
            raise ValueError(kind)
        log_path = workdir / f"{kind}.out"
        server = ServerProcess(kind, spec, workdir, argv, env, log_path, impl=impl)
        (workdir / "argv").write_text(shlex.join(argv) + "\n")
        server.start()
        if not wait:
            return server
        try:
            server.wait_ready()
            return server
        except ServerError as e:
            last_error = e
            server.stop()
            # Retry only an early exit (most likely a port someone else
            # took), never a server that ran but did not become ready.
            if spec.peers or not server.exit_code_before_ready:
                break
    raise last_error


# --------------------------------------------------------------------------
# ensembles


# What `srvr` (and `stat`) say on a member that is not leading, following or
# observing: ZooKeeper's ZK_NOT_SERVING.
NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
_MODE_LINE = re.compile(r"^Mode: (\S+)\s*$", re.M)


def server_mode(port: int, timeout: float = 2.0) -> Optional[str]:
    """The role a server reports in ``srvr``: "leader", "follower",
    "observer", "standalone"; None when it is not serving (NOT_SERVING),
    does not answer, or answers something else."""
    try:
        text = four_letter(port, "srvr", timeout=timeout)
    except OSError:
        return None
    m = _MODE_LINE.search(text)
    return m.group(1) if m else None


class Ensemble:
    """The members of one ensemble (``ServerProcess`` objects with ``myid``
    and ``peers`` in their spec), in myid order."""

    def __init__(self, kind: str, members: List[ServerProcess], base: Path):
        self.kind = kind
        self.members = list(members)
        self.base = base
        self.killed: List[ServerProcess] = []

    # --- addressing

    def member(self, myid: int) -> ServerProcess:
        for m in self.members:
            if m.spec.myid == myid:
                return m
        raise KeyError(myid)

    @property
    def hosts(self) -> str:
        """Connect string listing every member (myid order)."""
        return ",".join(m.hosts for m in self.members)

    def hosts_from(self, first: ServerProcess) -> str:
        """Connect string listing every member, `first` first and the rest
        in myid order after it: a client that does not shuffle its host list
        connects to `first` and fails over to the others."""
        i = self.members.index(first)
        order = self.members[i:] + self.members[:i]
        return ",".join(m.hosts for m in order)

    def alive(self) -> List[ServerProcess]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    # --- roles

    def modes(self) -> Dict[int, Optional[str]]:
        """myid -> mode from srvr, for the members that are running."""
        return {m.spec.myid: server_mode(m.port) for m in self.alive()}

    def wait_roles(self, timeout: float = READY_TIMEOUT_S, not_leader: Optional[int] = None) -> ServerProcess:
        """Wait until every running member serves, exactly one as leader and
        the others as followers (and the leader is not `not_leader`); return
        the leader. Fails with the modes seen and the members' log tails."""
        deadline = time.monotonic() + timeout
        modes: Dict[int, Optional[str]] = {}
        while time.monotonic() < deadline:
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None and m not in self.killed:
                    raise ServerError(f"{m.kind} myid={m.spec.myid} exited with {m.proc.returncode}\n"
                                      + m.log_tail())
            modes = self.modes()
            leaders = [i for i, mode in modes.items() if mode == "leader"]
            followers = [i for i, mode in modes.items() if mode == "follower"]
            if (len(leaders) == 1 and len(leaders) + len(followers) == len(modes)
                    and leaders[0] != not_leader):
                leader = self.member(leaders[0])
                # Apache ZooKeeper reports its role a moment before its
                # request pipeline is up; wait until each member takes sessions.
                if all(accepts_sessions(m.port) for m in self.alive()):
                    return leader
            time.sleep(0.05)
        raise ServerError(f"{self.kind} ensemble did not settle into one leader and followers "
                          f"within {timeout}s; srvr modes: {modes}\n"
                          + "\n".join(m.log_tail(25) for m in self.members))

    def leader(self) -> ServerProcess:
        """The member that says it leads now (no waiting)."""
        for i, mode in self.modes().items():
            if mode == "leader":
                return self.member(i)
        raise ServerError(f"no leader now: {self.modes()}")

    def followers(self) -> List[ServerProcess]:
        return [self.member(i) for i, mode in self.modes().items() if mode == "follower"]

    # --- faults and lifecycle

    def kill(self, member: ServerProcess) -> None:
        """kill -9 one member (by its PID)."""
        self.killed.append(member)
        member.kill()

    def restart(self, member: ServerProcess, wait: bool = True) -> ServerProcess:
        """Start a stopped or killed member again with the same spec and
        directory (its data dir and myid are kept); replaces it in
        ``members``."""
        if member.proc is not None and member.proc.poll() is None:
            member.stop()
        fresh = start_server(member.kind, member.workdir, spec=member.spec, wait=False)
        self.members[self.members.index(member)] = fresh
        if member in self.killed:
            self.killed.remove(member)
        if wait:
            fresh.wait_ready()
        return fresh

    def stop(self) -> None:
        for m in reversed(self.members):
            m.stop()

    def log_tails(self, n: int = 30) -> str:
        return "\n".join(f"===== {m!r} myid={m.spec.myid}\n{m.log_tail(n)}" for m in self.members)

    def __repr__(self):
        return f"<Ensemble {self.kind} {[(m.spec.myid, m.port) for m in self.members]}>"


def ensemble_specs(n: int = 3, tick_time: int = 200, client_in_server_lines: bool = True,
                   **spec_fields) -> List[ServerSpec]:
    """`allocate_ensemble` with the ensemble timing of the suite (tickTime
    200 ms; initLimit 10 and syncLimit 5 ticks come from ``common_cfg``) and
    any other ServerSpec fields.

    With `client_in_server_lines` the ``server.N`` lines name each member's
    client address too (``server.N=127.0.0.1:QP:EP;127.0.0.1:CP``, the 3.5+
    form); without, they are the old ``server.N=127.0.0.1:QP:EP`` form. Either
    way each member's zoo.cfg also has its own clientPort."""
    specs = [dataclasses.replace(s, tick_time=tick_time, **spec_fields) for s in allocate_ensemble(n)]
    if client_in_server_lines:
        ports = {s.myid: s.client_port for s in specs}
        peers = {i: f"{addr};127.0.0.1:{ports[i]}" for i, addr in specs[0].peers.items()}
        specs = [dataclasses.replace(s, peers=dict(peers)) for s in specs]
    return specs


# A member that dies at start-up because one of its ports was taken in the
# meantime (by anyone, including another member's outgoing peer connection,
# which gets its local port from the same range as `free_ports`).
_PORT_TAKEN = re.compile(r"already in use|os error 98|BindException", re.I)


def start_ensemble(kind: str, base: Path, n: int = 3, timeout: float = READY_TIMEOUT_S,
                   client_in_server_lines: bool = True, attempts: int = 3,
                   **spec_fields) -> Ensemble:
    """Start an n-member ensemble of `kind` under `base` (one directory per
    member, ``{kind}-{myid}``), wait until each answers ``ruok`` and until
    they have settled into one leader and n-1 followers. On failure every
    member is stopped and ServerError carries their logs. Only when a member
    exited at start-up saying that a port was in use is the whole ensemble
    started again on fresh ports (in ``{kind}-{myid}.retryK``)."""
    for attempt in range(attempts):
        suffix = f".retry{attempt}" if attempt else ""
        try:
            return _start_ensemble_once(kind, base, suffix, n, timeout, client_in_server_lines,
                                        **spec_fields)
        except _PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class _PortTaken(ServerError):
    pass


def _start_ensemble_once(kind, base, suffix, n, timeout, client_in_server_lines, **spec_fields):
    specs = ensemble_specs(n, client_in_server_lines=client_in_server_lines, **spec_fields)
    members = []
    try:
        for s in specs:
            members.append(start_server(kind, base / f"{kind}-{s.myid}{suffix}", spec=s, wait=False))
        ens = Ensemble(kind, members, base)
        deadline = time.monotonic() + timeout
        for m in members:
            m.wait_ready(max(1.0, deadline - time.monotonic()))
        ens.wait_roles(max(1.0, deadline - time.monotonic()))
        return ens
    except ServerError as e:
        for m in members:
            m.stop()
        died_on_port = [m for m in members if m.exit_code not in (None, 0)
                        and _PORT_TAKEN.search(m.log_tail(20))]
        if died_on_port:
            raise _PortTaken(str(e)) from e
        raise
    except BaseException:
        for m in members:
            m.stop()
        raise

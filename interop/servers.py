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
with the same ``peers`` list (see ``allocate_ensemble``).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
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
    """Specs for an n-node ensemble on loopback, ports allocated."""
    peers = {i: f"127.0.0.1:{free_port()}:{free_port()}" for i in range(1, n + 1)}
    return [
        ServerSpec(client_port=free_port(), myid=i, peers=dict(peers))
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

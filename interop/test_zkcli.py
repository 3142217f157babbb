"""Debian's zkCli.sh (ZooKeeper 3.8's Java CLI) against Corral.

Two ways of driving it:
* one-shot: ``zkCli.sh -server 127.0.0.1:PORT cmd args...`` runs one command
  on a fresh session and exits (rc 0 on success, 1 on a failed command, 127 for
  an unknown one). Results go to stdout, "Created /x" and error messages to
  stderr.
* a session on stdin: commands one per line, no prompt (JLine is off without a
  terminal).

The same script runs against a fresh Apache ZooKeeper and a fresh Corral and the
normalised transcripts must be equal; a few outputs are also asserted
literally so that a failure reads plainly.
"""

import os
import re
import subprocess

import pytest

import servers

NOISE = re.compile(
    r"^(Connecting to .*|Welcome to ZooKeeper!|JLine support is (dis|en)abled|WATCHER::|"
    r"WatchedEvent state:(SyncConnected|Closed) type:None path:null|SLF4J: .*|)$"
)
ZXID_LINE = re.compile(r"^(cZxid|mZxid|pZxid) = (0x[0-9a-f]+)$")
TIME_LINE = re.compile(r"^(ctime|mtime) = .*$")
OWNER_LINE = re.compile(r"^ephemeralOwner = (0x[0-9a-f]+)$")


def zkcli(server, *args, stdin=None, timeout=60):
    env = dict(os.environ)
    # a quick JVM start is all the CLI needs
    env["CLIENT_JVMFLAGS"] = "-Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true"
    p = subprocess.run(
        [servers.zkcli_path(), "-server", server.hosts, *args],
        input=stdin if stdin is not None else "",
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    clean = lambda text: [l for l in text.splitlines() if not NOISE.match(l)]  # noqa: E731
    return p.returncode, clean(p.stdout), clean(p.stderr)


def normalise(transcript):
    """Zxids -> rank among all zxids in the transcript, times -> T, session
    ids -> SESSION. `transcript` is a list of (label, rc, out_lines, err_lines)."""
    zxids = set()
    for _, _, out, err in transcript:
        for l in out + err:
            m = ZXID_LINE.match(l)
            if m:
                zxids.add(int(m.group(2), 16))
    rank = {z: i for i, z in enumerate(sorted(zxids - {0}), start=1)}
    result = []
    for label, rc, out, err in transcript:
        def fix(l):
            m = ZXID_LINE.match(l)
            if m:
                z = int(m.group(2), 16)
                return f"{m.group(1)} = z{rank[z] if z else 0}"
            if TIME_LINE.match(l):
                return l.split(" = ")[0] + " = T"
            m = OWNER_LINE.match(l)
            if m and m.group(1) != "0x0":
                return "ephemeralOwner = SESSION"
            return l
        result.append((label, rc, [fix(l) for l in out], [fix(l) for l in err]))
    return result


ONE_SHOT_SCRIPT = [
    ["create", "/a", "hello"],
    ["create", "/a", "again"],
    ["create", "/b"],
    ["create", "/x/y", "z"],
    ["create", "-s", "/a/s-", "data"],
    ["create", "-s", "/a/s-", "data"],
    # no ephemerals here: a one-shot zkCli exits without closing its session,
    # so an ephemeral would live until the session expires
    ["create", "-c", "/cont"],
    # TTLs long enough that no server may expire the node during the test
    ["create", "-t", "600000", "/ttl", "t"],
    ["ls", "/"],
    ["ls", "/a"],
    ["ls", "-s", "/a"],
    ["ls", "-R", "/a"],
    ["ls", "/nope"],
    ["get", "/a"],
    ["get", "-s", "/a"],
    ["get", "/b"],
    ["get", "/nope"],
    ["set", "/a", "world"],
    ["set", "-v", "5", "/a", "bad"],
    ["set", "-v", "1", "/a", "good"],
    ["set", "/nope", "x"],
    ["get", "/a"],
    ["stat", "/a"],
    ["stat", "/nope"],
    ["delete", "/a"],
    ["delete", "/nope"],
    ["delete", "-v", "7", "/b"],
    ["delete", "-v", "0", "/b"],
    ["create", "/a/b"],
    ["create", "/a/b/c", "deep"],
    ["getAcl", "/a"],
    ["setAcl", "/cont", "world:anyone:r"],
    ["getAcl", "/cont"],
    ["set", "/cont", "denied"],
    ["getAllChildrenNumber", "/a"],
    ["deleteall", "/a"],
    ["deleteall", "/nope"],
    ["ls", "/"],
    ["sync", "/"],
    ["whoami"],
    ["bogus"],
    ["get"],
]


def run_one_shot(server):
    return normalise([(" ".join(cmd), *zkcli(server, *cmd)) for cmd in ONE_SHOT_SCRIPT])


STDIN_SCRIPT = """\
create /s1 one
create /s1 dup
ls /
get /s1
get /missing
set /s1 two
get -s /s1
create -e /s1/e mine
stat /s1/e
ls /s1
delete /s1
create -s /s1/q- x
create -s /s1/q- y
ls /s1
getEphemerals /s1
addauth digest user:pw
create /secret s auth::cdrwa
getAcl /secret
deleteall /s1
ls /
quit
"""


def run_stdin(server):
    rc, out, err = zkcli(server, stdin=STDIN_SCRIPT)
    return normalise([("stdin session", rc, out, err)])


def format_transcript(t):
    lines = []
    for label, rc, out, err in t:
        lines.append(f"$ {label}  (rc={rc})")
        lines += [f"  out: {l}" for l in out]
        lines += [f"  err: {l}" for l in err]
    return lines


def compare(expected, actual):
    e, a = format_transcript(expected), format_transcript(actual)
    if e != a:
        import difflib
        diff = "\n".join(difflib.unified_diff(e, a, "zookeeper-3.8", "corral", lineterm=""))
        pytest.fail("zkCli transcripts differ\n" + diff, pytrace=False)


def _by_label(t):
    """first occurrence of each command"""
    d = {}
    for label, rc, out, err in t:
        d.setdefault(label, (rc, out, err))
    return d


def test_zkcli_one_shot(server_factory):
    server_factory.check("corral")
    zk = server_factory.start("zookeeper")
    expected = run_one_shot(zk)
    zk.stop()
    corral = server_factory.start("corral")
    actual = run_one_shot(corral)

    got = _by_label(actual)
    # literal expectations, as ZooKeeper 3.8's zkCli prints them
    assert got["create /a hello"] == (0, [], ["Created /a"])
    assert got["create /a again"] == (1, [], ["Node already exists: /a"])
    assert got["create /x/y z"] == (1, [], ["Node does not exist: /x/y"])
    assert got["create -s /a/s- data"] == (0, [], ["Created /a/s-0000000000"])
    assert got["create -t 600000 /ttl t"] == (0, [], ["Created /ttl"])
    assert got["ls /"][1] == ["[a, b, cont, ttl, zookeeper]"]
    assert got["ls /a"][1] == ["[s-0000000000, s-0000000001]"]
    assert got["get /a"] == (0, ["hello"], [])
    assert got["get /b"] == (0, ["null"], [])
    assert got["get /nope"] == (1, [], ["Node does not exist: /nope"])
    assert got["set -v 5 /a bad"] == (1, [], ["version No is not valid : /a"])
    assert got["delete /a"] == (1, [], ["Node not empty: /a"])
    assert got["getAcl /cont"] == (0, ["'world,'anyone", ": r"], [])
    assert got["stat /a"][1][0].startswith("cZxid = z")
    assert got["set /cont denied"] == (1, [], ["Insufficient permission : /cont"])
    assert got["getAllChildrenNumber /a"] == (0, ["4"], [])
    assert got["sync /"] == (0, ["Sync is OK"], [])
    assert got["whoami"] == (0, ["Auth scheme: User", "ip: 127.0.0.1"], [])
    assert got["bogus"][0] == 127
    compare(expected, actual)


def test_zkcli_stdin_session(server_factory):
    server_factory.check("corral")
    zk = server_factory.start("zookeeper")
    expected = run_stdin(zk)
    zk.stop()
    corral = server_factory.start("corral")
    actual = run_stdin(corral)
    rc, out, err = _by_label(actual)["stdin session"]
    assert rc == 0
    assert out[:3] == ["[s1, zookeeper]", "one", "two"]
    assert "Node does not exist: /missing" in err
    assert "Node already exists: /s1" in err
    assert "Node not empty: /s1" in err
    compare(expected, actual)


def test_zkcli_extended_types_disabled(server_factory):
    """Without extendedTypesEnabled a TTL create is refused."""
    spec = servers.ServerSpec(extended_types=False)
    results = []
    for kind in ("zookeeper", "corral"):
        s = server_factory.start(kind, spec=spec)
        results.append(normalise([("ttl", *zkcli(s, "create", "-t", "1000", "/t"))]))
        s.stop()
    assert results[1] == [("ttl", 1, [], ["KeeperErrorCode = Unimplemented for /t"])]
    compare(results[0], results[1])

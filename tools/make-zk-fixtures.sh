#!/usr/bin/env bash
# Regenerates tests/fixtures/zk/basic/: a real Apache ZooKeeper 3.8 data directory (version-2/)
# written by a standalone server that this script starts, drives and stops.
#
# Needs: Java 17, the Debian package `zookeeper` (3.8), python3 with kazoo.
#
#   tools/make-zk-fixtures.sh [OUTPUT_DIR]     (default: tests/fixtures/zk/basic)
#
# What it does:
#   1. starts org.apache.zookeeper.server.ZooKeeperServerMain on a free 127.0.0.1 port with a
#      temporary dataDir, snapCount=20 (so logs and snapshots roll every 10..20 transactions),
#      extended types (TTL nodes) enabled and zookeeper.preAllocSize=16 (KiB) so the log files'
#      zero-filled preallocated tail stays small; log files are kept exactly as ZooKeeper wrote them;
#   2. drives it with zkCli.sh (container and TTL nodes, which kazoo cannot create) and kazoo
#      (everything else, see drive.py below), leaving one session open;
#   3. reads the whole tree back with kazoo and writes expected.tsv and sessions.tsv;
#   4. stops the server with SIGTERM (by PID) and copies version-2/ plus ZooKeeper's own dumps
#      of the files (TxnLogToolkit, SnapshotFormatter) into OUTPUT_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/tests/fixtures/zk/basic}
JARS=/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/slf4j-simple.jar
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh

WORK=$(mktemp -d /tmp/zkfix.XXXXXX)
ZK_PID=
cleanup() {
    if [ -n "$ZK_PID" ] && kill -0 "$ZK_PID" 2>/dev/null; then
        kill "$ZK_PID" 2>/dev/null || true
        wait "$ZK_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
on_error() {
    echo "make-zk-fixtures: failed at line $1; server and zkCli logs follow" >&2
    tail -n 40 "$WORK/zk.log" "$WORK/zkcli.log" >&2 2>/dev/null || true
}
trap 'on_error $LINENO' ERR

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data"
cat >"$WORK/zoo.cfg" <<EOF
tickTime=2000
dataDir=$WORK/data
clientPort=$PORT
clientPortAddress=127.0.0.1
snapCount=20
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
EOF

echo "starting ZooKeeper on 127.0.0.1:$PORT, dataDir $WORK/data"
java -Dzookeeper.extendedTypesEnabled=true \
    -Dzookeeper.preAllocSize=16 \
    -Dzookeeper.admin.enableServer=false \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -cp "$JARS" org.apache.zookeeper.server.ZooKeeperServerMain "$WORK/zoo.cfg" \
    >"$WORK/zk.log" 2>&1 &
ZK_PID=$!

for _ in $(seq 1 100); do
    if [ "$(python3 - "$PORT" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"ruok")
print(s.recv(4).decode())
PY
)" = "imok" ]; then
        break
    fi
    sleep 0.2
done

zkcli() {
    JAVA_OPTS="-Dzookeeper.extendedTypesEnabled=true" "$ZKCLI" -server "127.0.0.1:$PORT" "$@" \
        >>"$WORK/zkcli.log" 2>&1
}

# Container and TTL nodes: kazoo has no API for them. Each zkCli run is its own session, so
# these also log createSession / closeSession transactions.
zkcli create -c /cont "container-data"
zkcli create /cont/child "c1"
zkcli create -t 3600000 /ttl "ttl-data"
zkcli create -s -t 3600000 /ttlseq- "ttl-seq-data"

python3 - "$PORT" "$WORK" <<'PY'
import sys, time
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl, make_acl, OPEN_ACL_UNSAFE
from kazoo.exceptions import NodeExistsError, BadVersionError

port, work = sys.argv[1], sys.argv[2]
hosts = "127.0.0.1:" + port

a = KazooClient(hosts=hosts, timeout=10)
a.start()
a.add_auth("digest", "alice:secret")

a.create("/app", b"hello")
a.create("/app/config", b"v1")
a.set("/app/config", b"v2")
a.set("/app/config", b"v3", version=1)
for i in range(3):
    a.create("/app/seq-", b"s%d" % i, sequence=True)
a.create("/binary", bytes(range(256)))
a.create("/empty", b"")
# A digest ACL readable only by alice, and one mixing digest and world:anyone read.
alice_all = make_digest_acl("alice", "secret", all=True)
a.create("/secure", b"top-secret", acl=[alice_all])
a.create("/mixed", b"m", acl=[alice_all, make_acl("world", "anyone", read=True)])
# setACL on an existing node (aversion 1).
a.set_acls("/app/config", [alice_all, make_acl("world", "anyone", read=True)])
# create then delete.
a.create("/gone", b"bye")
a.delete("/gone")
# A failed single op is logged as an error transaction.
try:
    a.create("/app", b"dup")
except NodeExistsError:
    pass
# A committed multi: create, setData, check, delete.
a.create("/multi", b"")
a.create("/multi/victim", b"x")
t = a.transaction()
t.create("/multi/a", b"ma")
t.set_data("/app", b"hello2")
t.check("/app/config", 2)
t.delete("/multi/victim")
print("multi ok:", t.commit())
# A failed multi (bad version in the check) is logged as a multi of error sub-transactions.
t = a.transaction()
t.create("/multi/never", b"no")
t.check("/app/config", 99)
print("failed multi:", t.commit())

# Session c: an ephemeral node that goes away with its session (closeSession lists its paths).
c = KazooClient(hosts=hosts, timeout=10)
c.start()
c.create("/app/eph-c", b"short", ephemeral=True)
c.stop()
c.close()

# Session b stays open until the server stops, so later snapshots list it.
b = KazooClient(hosts=hosts, timeout=30)
b.start()
b.create("/app/eph-b", b"long", ephemeral=True)
b.create("/app/eseq-", b"es", ephemeral=True, sequence=True)

# Enough setData to roll several logs and snapshots while b is open.
a.create("/counter", b"0")
for i in range(1, 61):
    a.set("/counter", b"%d" % i)
    if i % 10 == 0:
        time.sleep(0.3)  # let the snapshot thread finish
a.create("/last", b"the end")

# Read back the whole tree as alice (who can read /secure).
def fmt_acl(acls):
    return "|".join("%d,%s,%s" % (x.perms, x.id.scheme, x.id.id) for x in acls)

rows = []
def walk(path):
    data, st = a.get(path)
    acls, _ = a.get_acls(path)
    rows.append("\t".join([
        path,
        "null" if data is None else data.hex(),
        fmt_acl(acls),
        str(st.czxid), str(st.mzxid), str(st.ctime), str(st.mtime),
        str(st.version), str(st.cversion), str(st.aversion),
        str(st.ephemeralOwner), str(st.pzxid), str(st.dataLength), str(st.numChildren),
    ]))
    for child in sorted(a.get_children(path)):
        walk(("" if path == "/" else path) + "/" + child)
walk("/")
with open(work + "/expected.tsv", "w") as f:
    f.write("# path\tdata_hex\tacls(perms,scheme,id|...)\tczxid\tmzxid\tctime\tmtime\tversion"
            "\tcversion\taversion\tephemeral_owner\tpzxid\tdata_length\tnum_children\n")
    for r in rows:
        f.write(r + "\n")
with open(work + "/sessions.tsv", "w") as f:
    f.write("# session_id\tnegotiated_timeout_ms\trole\n")
    f.write("%d\t%d\tb-open-at-stop\n" % (b.client_id[0], b._session_timeout))
    f.write("%d\t%d\ta-open-at-stop\n" % (a.client_id[0], a._session_timeout))
print("rows:", len(rows))
# Leave both sessions open: stop the server underneath them.
sys.stdout.flush()
import os
os._exit(0)
PY

echo "stopping ZooKeeper (pid $ZK_PID)"
kill -TERM "$ZK_PID"
wait "$ZK_PID" 2>/dev/null || true
ZK_PID=

V2="$WORK/data/version-2"
rm -rf "$OUT"
mkdir -p "$OUT/version-2"
cp "$V2"/log.* "$V2"/snapshot.* "$OUT/version-2/"
cp "$WORK/expected.tsv" "$WORK/sessions.tsv" "$OUT/"

# ZooKeeper's own view of the files, for cross-checking by eye and by tests.
{
    for f in $(for f in "$OUT"/version-2/log.*; do printf '%d %s\n' "0x${f##*.}" "$f"; done \
        | sort -n | cut -d' ' -f2); do
        echo "== $(basename "$f")"
        java -cp "$JARS" org.apache.zookeeper.server.persistence.TxnLogToolkit -d "$f" 2>/dev/null \
            | LC_ALL=C tr -c '\n[:print:]' '.' | grep -v '^$' || true
    done
} >"$OUT/zk-txnlog-dump.txt"
NEWEST_SNAP=$(for f in "$OUT"/version-2/snapshot.*; do
    printf '%d %s\n' "0x${f##*.}" "$f"
done | sort -n | tail -1 | cut -d' ' -f2)
{
    echo "== $(basename "$NEWEST_SNAP")"
    java -cp "$JARS" org.apache.zookeeper.server.SnapshotFormatter -d "$NEWEST_SNAP" 2>/dev/null \
        | LC_ALL=C tr -c '\n[:print:]' '.' || true
} >"$OUT/zk-snapshot-dump.txt"

python3 - "$OUT" <<'PY'
import os, sys
out = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(out + "/expected.tsv") if not l.startswith("#")]
sessions = [l.rstrip("\n").split("\t") for l in open(out + "/sessions.tsv") if not l.startswith("#")]
v2 = sorted(os.listdir(out + "/version-2"), key=lambda n: (n.split(".")[0], int(n.split(".")[1], 16)))

def show(hexdata):
    d = bytes.fromhex(hexdata)
    if d == bytes(range(256)):
        return "bytes 0x00..0xff"
    s = d.decode("latin-1")
    return repr(s) if s.isprintable() else "<%d bytes>" % len(d)

with open(out + "/EXPECTED.md", "w") as f:
    f.write("""# ZooKeeper 3.8 fixture `basic`

Generated by `tools/make-zk-fixtures.sh` (do not edit by hand; rerun the script, which rewrites
every file here). A standalone Apache ZooKeeper 3.8.0 (Debian package) ran with `snapCount=20`,
`zookeeper.extendedTypesEnabled=true` and `zookeeper.preAllocSize=16` (KiB, so each log file is
16 KiB + 16 bytes: header, records, then the zero-filled preallocated tail, kept as written).

What the script did, in order: four `zkCli.sh` runs (container `/cont`, `/cont/child`, TTL
`/ttl` and TTL-sequential `/ttlseq-` with ttl 3600000 ms; zkCli exits without closing its
session, so those four sessions stay open), then kazoo session *a* (digest auth `alice:secret`):
creates, two setData on `/app/config`, three sequential `/app/seq-`, `/binary` (bytes 0..255),
`/empty`, digest-ACL nodes `/secure` and `/mixed`, setACL on `/app/config`, create+delete
`/gone`, a failing duplicate create of `/app` (an error txn, NODEEXISTS), a committed multi
(create `/multi/a`, setData `/app`, check `/app/config`, delete `/multi/victim`) and a failed
multi (bad version: logged as create + error sub-records). Session *c* created the ephemeral
`/app/eph-c` and closed (closeSession lists it). Session *b* created ephemerals `/app/eph-b` and
`/app/eseq-…` and stayed open; `/counter` got 60 setData (rolling logs and snapshots), `/last`
was created last. The tree was read back with kazoo, then the server got SIGTERM with *a* and
*b* still open.

## Files

- `version-2/`: %s
- `expected.tsv`: the tree as kazoo read it back (client view of the Stat; authoritative for
  tests): path, data hex, ACLs (`perms,scheme,id` joined by `|`), czxid, mzxid, ctime, mtime,
  version, cversion, aversion, ephemeralOwner, pzxid, dataLength, numChildren.
- `sessions.tsv`: sessions *a* and *b* (id, negotiated timeout); both must be live after
  loading the newest snapshot and replaying the log.
- `zk-txnlog-dump.txt`: `TxnLogToolkit -d` of every log (non-printable bytes as `.`).
- `zk-snapshot-dump.txt`: `SnapshotFormatter -d` of the newest snapshot (persisted stats, base64
  data, session table).

Note that the client-view Stat differs from the persisted one: cversion is
`2 * persisted cversion - numChildren`, and container/TTL nodes show ephemeralOwner 0.

## Tree at shutdown

| path | data | ACL (perms,scheme,id) | version | cversion | aversion | ephemeralOwner | dataLength | numChildren |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
""" % ", ".join("`%s`" % n for n in v2))
    for r in rows:
        f.write("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n" % (
            r[0], show(r[1]), r[2].replace("|", "; "), r[7], r[8], r[9], r[10], r[12], r[13]))
    f.write("\n## Open sessions at shutdown\n\n| session id | timeout (ms) | role |\n| --- | --- | --- |\n")
    for sid, to, role in sessions:
        f.write("| %#x | %s | %s |\n" % (int(sid), to, role))
PY

ls -l "$OUT" "$OUT/version-2"
du -sh "$OUT"

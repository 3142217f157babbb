"""Requests kazoo 2.11 has no method for, sent through kazoo's own connection.

kazoo's connection thread sends any object with ``type`` and ``serialize()``
and hands the reply body to its ``deserialize()``; ``KazooClient._call`` queues
it. So container and TTL creates, addWatch, getEphemerals,
getAllChildrenNumber, multiRead, whoAmI and a multi that decodes every result
type are a few lines each. Wire layouts are those of zookeeper.jute.

``EventTap`` records watch notifications as they come off the wire, in the
connection thread, before kazoo dispatches them: the order there is the order
the server sent them, and everything a server sent before the reply to a later
request on that session has been recorded by the time that reply is seen.
"""

from __future__ import annotations

import struct
import threading
from collections import namedtuple
from typing import List

from kazoo.exceptions import EXCEPTIONS
from kazoo.protocol import serialization as ser
from kazoo.protocol.serialization import (
    int_struct,
    read_acl,
    read_buffer,
    read_string,
    stat_struct,
    write_buffer,
    write_string,
)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import OPEN_ACL_UNSAFE

long_struct = struct.Struct("!q")

# CreateMode flags (CreateMode.java)
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# AddWatchMode
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1


def _write_acls(acls):
    b = bytearray(int_struct.pack(len(acls)))
    for acl in acls:
        b.extend(int_struct.pack(acl.perms) + write_string(acl.id.scheme) + write_string(acl.id.id))
    return b


def _read_stat(buf, off):
    return ZnodeStat._make(stat_struct.unpack_from(buf, off)), off + stat_struct.size


def _read_string_vector(buf, off):
    n = int_struct.unpack_from(buf, off)[0]
    off += 4
    out = []
    for _ in range(max(n, 0)):
        s, off = read_string(buf, off)
        out.append(s)
    return out, off


class CreateAny(namedtuple("CreateAny", "path data acl flags ttl opcode")):
    """create (1), create2 (15), createContainer (19) or createTTL (21)."""

    @property
    def type(self):
        return self.opcode

    def serialize(self):
        b = bytearray()
        b.extend(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(_write_acls(self.acl))
        b.extend(int_struct.pack(self.flags))
        if self.opcode == 21:
            b.extend(long_struct.pack(self.ttl))
        return b

    def deserialize(self, buf, off):
        path, off = read_string(buf, off)
        if self.opcode == 1:
            return path, None
        stat, off = _read_stat(buf, off)
        return path, stat


class GetEphemerals(namedtuple("GetEphemerals", "path")):
    type = 103

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, buf, off):
        return _read_string_vector(buf, off)[0]


class GetAllChildrenNumber(namedtuple("GetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, buf, off):
        return int_struct.unpack_from(buf, off)[0]


class AddWatch(namedtuple("AddWatch", "path mode")):
    type = 106

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.mode)

    @classmethod
    def deserialize(cls, buf, off):
        return True


class WhoAmI:
    """whoAmI (107). A plain class: kazoo skips replies to falsy requests,
    and an empty namedtuple is falsy."""

    type = 107

    def serialize(self):
        return b""

    @classmethod
    def deserialize(cls, buf, off):
        n = int_struct.unpack_from(buf, off)[0]
        off += 4
        out = []
        for _ in range(max(n, 0)):
            scheme, off = read_string(buf, off)
            user, off = read_string(buf, off)
            out.append((scheme, user))
        return out


class RawGetData(namedtuple("RawGetData", "path")):
    """getData without a watch, path sent as given (no client-side checks)."""

    type = 4

    def serialize(self):
        return write_string(self.path) + b"\x00"

    @classmethod
    def deserialize(cls, buf, off):
        data, off = read_buffer(buf, off)
        stat, off = _read_stat(buf, off)
        return data, stat


class RawDelete(namedtuple("RawDelete", "path version")):
    type = 2

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.version)

    @classmethod
    def deserialize(cls, buf, off):
        return True


# --- multi / multiRead -------------------------------------------------------

Op = namedtuple("Op", "opcode body")


def op_create(path, data=b"", acl=None, flags=0, opcode=1, ttl=0):
    return Op(opcode, bytes(CreateAny(path, data, acl or OPEN_ACL_UNSAFE, flags, ttl, opcode).serialize()))


def op_delete(path, version=-1):
    return Op(2, bytes(write_string(path) + int_struct.pack(version)))


def op_set(path, data, version=-1):
    return Op(5, bytes(write_string(path) + write_buffer(data) + int_struct.pack(version)))


def op_check(path, version):
    return Op(13, bytes(write_string(path) + int_struct.pack(version)))


def op_get_children(path):
    return Op(8, bytes(write_string(path) + b"\x00"))


def op_get_data(path):
    return Op(4, bytes(write_string(path) + b"\x00"))


_multi_header = struct.Struct("!iBi")


class Multi(namedtuple("Multi", "ops read")):
    # never empty as a tuple (2 fields), so never falsy even with no ops
    """multi (14) or multiRead (22); results decoded for every op type:
    ("create", path) ("create2", path, stat) ("delete",) ("set", stat) ("check",)
    ("children", [names]) ("data", bytes, stat) ("error", ExceptionClassName)."""

    @property
    def type(self):
        return 22 if self.read else 14

    def serialize(self):
        b = bytearray()
        for op in self.ops:
            b.extend(_multi_header.pack(op.opcode, 0, -1))
            b.extend(op.body)
        b.extend(_multi_header.pack(-1, 1, -1))
        return b

    @classmethod
    def deserialize(cls, buf, off):
        results = []
        while True:
            typ, done, err = _multi_header.unpack_from(buf, off)
            off += _multi_header.size
            if done:
                break
            if typ in (1, 19):
                path, off = read_string(buf, off)
                results.append(("create", path))
            elif typ in (15, 21):
                path, off = read_string(buf, off)
                stat, off = _read_stat(buf, off)
                results.append(("create2", path, stat))
            elif typ == 2:
                results.append(("delete",))
            elif typ == 5:
                stat, off = _read_stat(buf, off)
                results.append(("set", stat))
            elif typ == 13:
                results.append(("check",))
            elif typ == 8:
                names, off = _read_string_vector(buf, off)
                results.append(("children", names))
            elif typ == 4:
                data, off = read_buffer(buf, off)
                stat, off = _read_stat(buf, off)
                results.append(("data", data, stat))
            elif typ == -1:
                code = int_struct.unpack_from(buf, off)[0]
                off += 4
                results.append(("error", type(EXCEPTIONS[code]()).__name__))
            else:
                results.append(("unknown-type", typ))
                break
        return results


def call(client, request, timeout=15):
    """Send `request` on kazoo client's session and wait for its reply."""
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=timeout)


# --- watch notifications off the wire ---------------------------------------

WireEvent = namedtuple("WireEvent", "client type state path")

EVENT_NAMES = {
    -1: "None",
    1: "NodeCreated",
    2: "NodeDeleted",
    3: "NodeDataChanged",
    4: "NodeChildrenChanged",
    5: "DataWatchRemoved",
    6: "ChildWatchRemoved",
    7: "PersistentWatchRemoved",
}


class EventTap:
    """Records every watch notification each tapped client receives."""

    def __init__(self):
        self.events: List[WireEvent] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def tap(self, client, label):
        conn = client._connection
        original = conn._read_watch_event

        def read_watch_event(buffer, offset):
            watch, _ = ser.Watch.deserialize(buffer, offset)
            with self.cond:
                self.events.append(WireEvent(label, EVENT_NAMES.get(watch.type, watch.type),
                                             watch.state, watch.path))
                self.cond.notify_all()
            return original(buffer, offset)

        # An instance attribute shadows the method; the connection thread
        # calls self._read_watch_event(...).
        conn._read_watch_event = read_watch_event

    def take(self):
        with self.lock:
            ev, self.events = self.events, []
        return ev

    def wait_for(self, n, timeout=10.0):
        """Wait until at least n events are buffered (for notifications that
        no later reply on the same session orders)."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.events) >= n, timeout)
            return len(self.events)


def drain_callbacks(client, timeout=10.0):
    """Wait until kazoo's watch-callback thread has run everything queued."""
    done = threading.Event()
    client.handler.callback_queue.put(done.set)
    if not done.wait(timeout):
        raise TimeoutError("kazoo callback queue did not drain")


class RemoveWatches(namedtuple("RemoveWatches", "path watcher_type")):
    """removeWatches (18): watcher_type 1 children, 2 data, 3 any."""

    type = 18

    def serialize(self):
        return write_string(self.path) + int_struct.pack(self.watcher_type)

    @classmethod
    def deserialize(cls, buf, off):
        return True


class CheckWatches(RemoveWatches):
    """checkWatches (17): same body as removeWatches."""

    type = 17


# --- a bare session on a socket --------------------------------------------

_reply_header = struct.Struct("!iqi")


class RawSession:
    """A minimal client on a plain socket, for what kazoo cannot do: keep a
    session across its own reconnection and re-arm watches with SetWatches
    (xid -8), as the Java client does."""

    def __init__(self, port, host="127.0.0.1"):
        self.addr = (host, port)
        self.sock = None
        self.session_id = 0
        self.passwd = b"\0" * 16
        self.last_zxid = 0
        self.xid = 0
        self.timeout_ms = 0
        self.events = []  # (type name, path) of notifications, in arrival order

    def connect(self, timeout_ms=10000):
        import socket
        self.sock = socket.create_connection(self.addr, timeout=10)
        body = struct.pack("!iqiq", 0, self.last_zxid, timeout_ms, self.session_id)
        body += int_struct.pack(len(self.passwd)) + self.passwd + b"\0"
        self._send(body)
        buf = self._read_frame()
        _, self.timeout_ms, sid = struct.unpack_from("!iiq", buf, 0)
        plen = int_struct.unpack_from(buf, 16)[0]
        if self.timeout_ms > 0:
            self.session_id = sid
            self.passwd = buf[20:20 + plen]
        return self.timeout_ms > 0

    def _send(self, body):
        self.sock.sendall(int_struct.pack(len(body)) + body)

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    def _read_frame(self):
        n = int_struct.unpack(self._read_exact(4))[0]
        return self._read_exact(n)

    def send(self, opcode, body=b"", xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self._send(struct.pack("!ii", xid, opcode) + bytes(body))
        return xid

    def wait_reply(self, xid):
        """Read frames until the reply to `xid`; notifications on the way are
        recorded in self.events. Returns (err, body)."""
        while True:
            buf = self._read_frame()
            rxid, zxid, err = _reply_header.unpack_from(buf, 0)
            body = buf[_reply_header.size:]
            if rxid == -1:
                typ, state = struct.unpack_from("!ii", body, 0)
                path, _ = read_string(body, 8)
                self.events.append((EVENT_NAMES.get(typ, typ), path))
                continue
            if zxid > 0 and rxid != -1:
                self.last_zxid = max(self.last_zxid, zxid)
            if rxid == xid:
                return err, body

    def call(self, opcode, body=b""):
        return self.wait_reply(self.send(opcode, body))

    def get_data(self, path, watch=False):
        return self.call(4, write_string(path) + (b"\1" if watch else b"\0"))[0]

    def exists(self, path, watch=False):
        return self.call(3, write_string(path) + (b"\1" if watch else b"\0"))[0]

    def get_children(self, path, watch=False):
        return self.call(8, write_string(path) + (b"\1" if watch else b"\0"))[0]

    def sync(self, path="/"):
        return self.call(9, write_string(path))[0]

    def set_watches(self, data=(), exist=(), child=()):
        """SetWatches (101) with xid -8, relative to the last zxid seen."""
        body = bytearray(long_struct.pack(self.last_zxid))
        for paths in (data, exist, child):
            body += int_struct.pack(len(paths))
            for p in paths:
                body += write_string(p)
        return self.wait_reply(self.send(101, body, xid=-8))[0]

    def drop(self):
        """Close the socket without closing the session."""
        self.sock.close()
        self.sock = None

    def close(self):
        if self.sock:
            try:
                self.call(-11)
            except (OSError, ConnectionError):
                pass
            self.sock.close()
            self.sock = None

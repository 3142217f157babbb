"""kazoo's recipes and Debian's zkCli.sh against a 3-member ensemble (issue #4).

Each test starts a fresh ensemble on loopback (``quorum_factory``: tickTime
200 ms, initLimit 10, syncLimit 5, ``server.N=127.0.0.1:QP:EP;127.0.0.1:CP``
lines, a ``myid`` per data dir), waits until ``srvr`` shows one leader and two
followers, and spreads its clients over the members: every client gets a
connect string naming all three members, with "its" member first and host
shuffling off, so it starts on that member and can fail over to the others.

What is checked is what a recipe promises across members -- mutual exclusion,
one leader, FIFO order, barrier release, exact counts, watches firing on one
member for changes made through another -- and, when the leader is killed
with ``kill -9``, that a client reconnects to a survivor with the same session
(its ephemeral lock node stays), that no acknowledged write is lost, and that
writes go on under a new leader. Timeouts only bound a hang; no timing is
asserted.

``corral_ensemble`` is Corral; ``INTEROP_CORRAL_CMD=zookeeper`` turns it into
Apache ZooKeeper 3.8, which validates the tests themselves. The zkCli test
runs its transcript against both a ZooKeeper and a Corral ensemble and
compares them.
"""

import threading
import time

import pytest
from kazoo.client import KazooState
from kazoo.exceptions import ConnectionClosedError, LockTimeout, NodeExistsError
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock
from kazoo.recipe.party import Party
from kazoo.recipe.queue import LockingQueue, Queue
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.retry import KazooRetry

from test_recipes import Occupancy, run_threads
from test_zkcli import compare, format_transcript, normalise, zkcli

WAIT = 30  # seconds: generous bound for anything that should happen "soon"

# Sessions of 10 s (the default maxSessionTimeout would be 20 ticks = 4 s):
# a failover on a loaded 2-core machine must not depend on a tight timeout.
SESSION_TIMEOUT_MS = 20000
KAZOO_TIMEOUT_S = 10.0
# Reconnect quickly and forever: kazoo's default backs off up to an hour.
FAST_RECONNECT = dict(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5, max_jitter=0.05)


@pytest.fixture
def ensemble(quorum_factory):
    return quorum_factory("corral", max_session_timeout=SESSION_TIMEOUT_MS)


# --------------------------------------------------------------------------
# helpers


def connected_port(client):
    """Client port of the member a kazoo client is connected to, or None."""
    sock = getattr(client._connection, "_socket", None)
    try:
        return sock.getpeername()[1] if sock is not None else None
    except OSError:
        return None


def client_on(kazoo_factory, ens, member):
    """A kazoo client whose connect string lists every member with `member`
    first (no shuffling), checked to be connected to `member`."""
    c = kazoo_factory(ens.hosts_from(member), timeout=KAZOO_TIMEOUT_S, randomize_hosts=False,
                      connection_retry=dict(FAST_RECONNECT))
    assert connected_port(c) == member.port, (
        f"client meant for myid={member.spec.myid} (port {member.port}) is on port {connected_port(c)}")
    return c


def spread_clients(kazoo_factory, ens, n):
    """n clients, client i on member i mod len(members)."""
    return [client_on(kazoo_factory, ens, ens.members[i % len(ens.members)]) for i in range(n)]


def member_of(ens, client):
    port = connected_port(client)
    for m in ens.members:
        if m.port == port:
            return m
    return None


def wait_for(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    assert pred(), f"timed out after {timeout}s waiting for {what}"


# --------------------------------------------------------------------------
# the ensemble itself


def test_roles_and_replication(ensemble, kazoo_factory):
    modes = ensemble.modes()
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    clients = spread_clients(kazoo_factory, ensemble, 3)
    # a write through each member, read back through every member
    for i, c in enumerate(clients):
        c.create(f"/rep{i}", f"from-{i}".encode())
    for c in clients:
        c.sync("/")
        for i in range(3):
            assert c.get(f"/rep{i}")[0] == f"from-{i}".encode()
    # every member holds the same replica: identical Stat everywhere
    clients[0].set("/rep0", b"changed")
    stats = []
    for c in clients:
        c.sync("/rep0")
        data, stat = c.get("/rep0")
        assert data == b"changed"
        stats.append(stat)
    assert stats[0] == stats[1] == stats[2]
    assert stats[0].version == 1 and stats[0].mzxid > stats[0].czxid
    # one session seen from every member: its ephemeral is visible everywhere
    clients[1].create("/eph", b"", ephemeral=True)
    for c in clients:
        c.sync("/eph")
        assert c.exists("/eph").ephemeralOwner == clients[1].client_id[0]


# --------------------------------------------------------------------------
# recipes, clients spread over the members


def test_lock_mutual_exclusion_across_members(ensemble, kazoo_factory):
    clients = spread_clients(kazoo_factory, ensemble, 6)  # two sessions per member
    clients[0].create("/counter", b"0")
    occ = Occupancy()
    rounds = 8

    def worker(client, ident):
        def run():
            lock = Lock(client, "/locks/shared", identifier=ident)
            for _ in range(rounds):
                assert lock.acquire(timeout=WAIT), "lock not acquired"
                try:
                    occ.enter()
                    # read-modify-write without a version, through whichever
                    # member this session is on: only right if the lock
                    # excludes everyone and this member has applied the
                    # previous holder's write by the time we hold it
                    value = int(client.get("/counter")[0])
                    client.set("/counter", str(value + 1).encode())
                    occ.leave()
                finally:
                    lock.release()
        return run

    run_threads([worker(c, f"c{i}") for i, c in enumerate(clients)])
    assert occ.max_inside == 1
    assert occ.entries == rounds * len(clients)
    for c in clients[:3]:
        c.sync("/counter")
        assert int(c.get("/counter")[0]) == rounds * len(clients)
    assert clients[0].get_children("/locks/shared") == []


def test_lock_contention_across_members(ensemble, kazoo_factory):
    a, b, observer = spread_clients(kazoo_factory, ensemble, 3)
    la = Lock(a, "/locks/x", identifier="alice")
    lb = Lock(b, "/locks/x", identifier="bob")
    assert la.acquire(timeout=WAIT)
    with pytest.raises(LockTimeout):
        lb.acquire(timeout=0.5)
    assert not lb.acquire(blocking=False), "second holder got the lock"
    got = threading.Event()

    def wait_for_it():
        assert lb.acquire(timeout=WAIT)
        got.set()

    t = threading.Thread(target=wait_for_it, daemon=True)
    t.start()
    lo = Lock(observer, "/locks/x")
    wait_for(lambda: lo.contenders() == ["alice", "bob"], "both contenders seen on a third member")
    assert not got.is_set()
    la.release()
    assert got.wait(WAIT)
    t.join(WAIT)
    # the holder's session ends (closeSession through its member): released
    # for a waiter on another member
    lc = Lock(observer, "/locks/x", identifier="carol")
    waiting = threading.Event()
    acquired = threading.Event()

    def carol():
        waiting.set()
        if lc.acquire(timeout=WAIT):
            acquired.set()

    t = threading.Thread(target=carol, daemon=True)
    t.start()
    wait_for(lambda: lo.contenders() == ["bob", "carol"], "carol queued behind bob")
    b.stop()
    assert acquired.wait(WAIT), "lock of a closed session was not handed on"
    t.join(WAIT)
    lc.release()


def test_election_across_members(ensemble, kazoo_factory):
    n = 3
    clients = spread_clients(kazoo_factory, ensemble, n)
    elections = [Election(c, "/election", identifier=f"node{i}") for i, c in enumerate(clients)]
    leaders = []
    cond = threading.Condition()
    release = [threading.Event() for _ in range(n)]

    def run(i):
        def lead():
            with cond:
                leaders.append(i)
                cond.notify_all()
            release[i].wait(WAIT * 2)

        def go():
            try:
                elections[i].run(lead)
            except ConnectionClosedError:
                pass  # the leader whose session we closed
        return go

    threads = [threading.Thread(target=run(i), daemon=True) for i in range(n)]
    for t in threads:
        t.start()

    def wait_leaders(k):
        with cond:
            assert cond.wait_for(lambda: len(leaders) >= k, WAIT), leaders

    wait_leaders(1)
    wait_for(lambda: len(elections[0].contenders()) == n, "all candidates registered")
    for e in elections:  # every member agrees on who leads
        assert e.contenders()[0] == f"node{leaders[0]}"
    time.sleep(0.2)
    assert len(leaders) == 1, f"two leaders at once: {leaders}"

    first = leaders[0]
    clients[first].stop()  # the leading client goes away: its session closes
    release[first].set()
    wait_leaders(2)
    second = leaders[1]
    assert second != first
    with cond:
        assert len(leaders) == 2
    for i in range(n):
        if i != first:
            clients[i].sync("/election")
            assert elections[i].contenders()[0] == f"node{second}"
    release[second].set()  # steps down voluntarily: the third takes over
    wait_leaders(3)
    assert sorted(leaders) == [0, 1, 2]
    release[leaders[2]].set()
    for t in threads:
        t.join(WAIT)


def test_queue_across_members(ensemble, kazoo_factory):
    producer, consumer, _ = spread_clients(kazoo_factory, ensemble, 3)
    q_in = Queue(producer, "/queue")
    q_out = Queue(consumer, "/queue")
    items = [f"item-{i}".encode() for i in range(30)]
    for it in items:
        q_in.put(it)
    consumer.sync("/queue")
    assert len(q_out) == 30
    assert [q_out.get() for _ in items] == items
    assert q_out.get() is None
    q_in.put(b"low", priority=200)
    q_in.put(b"high", priority=10)
    q_in.put(b"mid", priority=100)
    consumer.sync("/queue")
    assert [q_out.get() for _ in range(3)] == [b"high", b"mid", b"low"]


def test_locking_queue_consumers_on_every_member(ensemble, kazoo_factory):
    producer, *consumers = spread_clients(kazoo_factory, ensemble, 4)
    n = 45
    LockingQueue(producer, "/lqueue").put_all([str(i).encode() for i in range(n)])
    taken = []
    taken_lock = threading.Lock()

    def consume(c):
        def run():
            lq = LockingQueue(c, "/lqueue")
            while True:
                item = lq.get(timeout=1.0)
                if item is None:
                    c.sync("/lqueue")
                    if len(lq) == 0:
                        return
                    continue
                with taken_lock:
                    taken.append(int(item))
                assert lq.consume()
        return run

    run_threads([consume(c) for c in consumers])
    assert sorted(taken) == list(range(n))
    assert len(taken) == n, "an item was handed out twice"


def test_barrier_across_members(ensemble, kazoo_factory):
    owner, *waiters = spread_clients(kazoo_factory, ensemble, 4)
    Barrier(owner, "/barrier").create()
    passed = []
    started = threading.Barrier(len(waiters) + 1)

    def wait(c):
        def run():
            c.sync("/barrier")  # the barrier exists on this member too
            started.wait(WAIT)
            passed.append(Barrier(c, "/barrier").wait(timeout=WAIT))
        return run

    threads = [threading.Thread(target=wait(c), daemon=True) for c in waiters]
    for t in threads:
        t.start()
    started.wait(WAIT)
    time.sleep(0.3)
    assert passed == [], "waiters passed a barrier that is still up"
    assert Barrier(owner, "/barrier").remove()
    for t in threads:
        t.join(WAIT)
    assert passed == [True, True, True]


def test_double_barrier_across_members(ensemble, kazoo_factory):
    n = 4
    clients = spread_clients(kazoo_factory, ensemble, n)
    lock = threading.Lock()
    arrived, leaving = [0], [0]
    seen_at_entry, seen_at_exit = [], []

    def member(c, i):
        def run():
            db = DoubleBarrier(c, "/dbarrier", n, identifier=f"m{i}")
            with lock:
                arrived[0] += 1
            db.enter()
            assert db.participating, f"m{i} failed to enter"
            # nobody gets in before everyone, whatever member it is on, came
            with lock:
                seen_at_entry.append(arrived[0])
            # (kazoo's enter can miss a "ready" node that the first one to
            # leave already deleted: give every member time to get in)
            time.sleep(0.2 + 0.05 * i)
            with lock:
                leaving[0] += 1
            db.leave()
            # nobody gets out before everyone has started to leave
            with lock:
                seen_at_exit.append(leaving[0])
        return run

    run_threads([member(c, i) for i, c in enumerate(clients)])
    assert seen_at_entry == [n] * n
    assert seen_at_exit == [n] * n
    clients[0].sync("/dbarrier")
    assert clients[0].get_children("/dbarrier") == []


def test_counter_across_members(ensemble, kazoo_factory):
    clients = spread_clients(kazoo_factory, ensemble, 6)
    per_thread = 15

    def worker(c):
        def run():
            counter = Counter(c, "/counter")
            for _ in range(per_thread):
                counter += 1  # versioned set: stale reads on a follower just retry
        return run

    run_threads([worker(c) for c in clients])
    for c in clients[:3]:
        c.sync("/counter")
        assert Counter(c, "/counter").value == per_thread * len(clients)


def test_party_across_members(ensemble, kazoo_factory):
    a, b, observer = spread_clients(kazoo_factory, ensemble, 3)
    Party(a, "/party", "alice").join()
    pb = Party(b, "/party", "bob")
    pb.join()
    observer.sync("/party")
    assert sorted(Party(observer, "/party")) == ["alice", "bob"]
    a.stop()  # membership is ephemeral: it ends with the session
    wait_for(lambda: sorted(Party(observer, "/party")) == ["bob"], "alice gone on a third member")
    pb.leave()
    observer.sync("/party")
    assert list(Party(observer, "/party")) == []


def test_watches_see_changes_made_through_other_members(ensemble, kazoo_factory):
    watcher, writer1, writer2 = spread_clients(kazoo_factory, ensemble, 3)
    assert len({connected_port(c) for c in (watcher, writer1, writer2)}) == 3
    writer1.create("/cfg", b"v0")
    watcher.sync("/cfg")
    seen_children, seen_data = [], []
    cond = threading.Condition()

    @ChildrenWatch(watcher, "/cfg")
    def on_children(children):
        with cond:
            seen_children.append(sorted(children))
            cond.notify_all()

    @DataWatch(watcher, "/cfg")
    def on_data(data, stat):
        with cond:
            seen_data.append((data, stat.version if stat else None))
            cond.notify_all()

    def wait_until(pred):
        with cond:
            assert cond.wait_for(pred, WAIT), (seen_children, seen_data)

    wait_until(lambda: seen_children and seen_data)
    for i in range(1, 5):
        (writer1 if i % 2 else writer2).set("/cfg", f"v{i}".encode())
        wait_until(lambda i=i: seen_data[-1] == (f"v{i}".encode(), i))
    writer2.create("/cfg/a", b"")
    wait_until(lambda: seen_children[-1] == ["a"])
    writer1.create("/cfg/b", b"")
    wait_until(lambda: seen_children[-1] == ["a", "b"])
    writer2.delete("/cfg/a")
    wait_until(lambda: seen_children[-1] == ["b"])
    versions = [v for _, v in seen_data]
    assert versions == sorted(versions)

    # plain one-shot watches: exists on a missing node, getData, getChildren
    events = []
    fired = threading.Event()

    def record(ev):
        events.append((ev.type, ev.path))
        fired.set()

    assert watcher.exists("/later", watch=record) is None
    writer2.create("/later", b"x")
    assert fired.wait(WAIT)
    assert events == [("CREATED", "/later")]
    fired.clear()
    watcher.get("/later", watch=record)
    writer1.set("/later", b"y")
    assert fired.wait(WAIT)
    assert events[1:] == [("CHANGED", "/later")]
    fired.clear()
    watcher.get("/later", watch=record)
    writer1.delete("/later")
    assert fired.wait(WAIT)
    assert events[2:] == [("DELETED", "/later")]


# --------------------------------------------------------------------------
# failover


@pytest.mark.parametrize("victim_role", ["leader", "follower"])
def test_member_killed_while_client_holds_lock_and_writes(ensemble, kazoo_factory, victim_role):
    """kill -9 a member (the leader, or a follower) while a client connected
    to it holds a lock and another one connected to it writes: both reconnect
    to survivors with the same session, the lock stays held (and exclusive),
    every acknowledged write survives, writes go on; a new leader is elected
    when the leader was killed, the old one stays when a follower was."""
    old_leader = ensemble.leader()
    victim = old_leader if victim_role == "leader" else ensemble.followers()[0]
    survivors = [m for m in ensemble.members if m is not victim]
    holder = client_on(kazoo_factory, ensemble, victim)
    writer = client_on(kazoo_factory, ensemble, victim)
    contender_client = client_on(kazoo_factory, ensemble, survivors[0])
    holder_sid, writer_sid = holder.client_id[0], writer.client_id[0]
    states = {"holder": [], "writer": []}
    holder.add_listener(lambda s: states["holder"].append(s))
    writer.add_listener(lambda s: states["writer"].append(s))

    lock = Lock(holder, "/fo/lock", identifier="holder")
    assert lock.acquire(timeout=WAIT)
    lock_node = f"/fo/lock/{lock.node}"
    assert holder.exists(lock_node).ephemeralOwner == holder_sid

    # watch recipes the holder set up through the old leader keep working
    # through the survivor it moves to (kazoo drops its watches on a
    # disconnect and the recipes set them again once reconnected)
    holder.create("/fo/cfg", b"v0")
    watched, watched_children = [], []
    watch_cond = threading.Condition()

    @DataWatch(holder, "/fo/cfg")
    def on_data(data, stat):
        with watch_cond:
            watched.append(data)
            watch_cond.notify_all()

    @ChildrenWatch(holder, "/fo/cfg")
    def on_children(children):
        with watch_cond:
            watched_children.append(sorted(children))
            watch_cond.notify_all()

    writer.ensure_path("/fo/w")
    acked = []
    attempted = [0]
    stop = threading.Event()
    errors = []
    retry = KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5, max_jitter=0.05,
                       ignore_expire=False, deadline=WAIT * 2)

    def write_loop():
        i = 0
        try:
            while not stop.is_set():
                path = f"/fo/w/n{i:06d}"
                attempted[0] = i + 1

                def create():
                    try:
                        writer.create(path, str(i).encode())
                    except NodeExistsError:
                        pass  # an earlier attempt went through before the connection dropped
                retry(create)
                acked.append(i)
                i += 1
        except BaseException as e:  # noqa
            errors.append(e)

    t = threading.Thread(target=write_loop, daemon=True)
    t.start()
    wait_for(lambda: len(acked) >= 20 or errors, "20 writes before the kill")
    assert not errors, errors

    ensemble.kill(victim)
    acked_at_kill = len(acked)
    if victim is old_leader:
        new_leader = ensemble.wait_roles(timeout=WAIT, not_leader=old_leader.spec.myid)
        assert new_leader is not old_leader and new_leader in survivors
    else:
        assert ensemble.wait_roles(timeout=WAIT) is old_leader

    # both clients come back on a survivor, with their sessions
    for name, c in (("holder", holder), ("writer", writer)):
        wait_for(lambda c=c: c.state == KazooState.CONNECTED and member_of(ensemble, c) in survivors,
                 f"{name} reconnected to a survivor")
    assert holder.client_id[0] == holder_sid, "holder got a new session"
    assert writer.client_id[0] == writer_sid, "writer got a new session"
    for name in states:
        assert KazooState.SUSPENDED in states[name], (name, states[name])
        assert KazooState.LOST not in states[name], (name, states[name])

    # writes go on under the new leader
    wait_for(lambda: len(acked) >= acked_at_kill + 20 or errors, "20 writes after the failover")
    stop.set()
    t.join(WAIT * 3)
    assert not t.is_alive(), "writer hung"
    assert not errors, errors

    # the lock is still the holder's, and still exclusive
    assert lock.is_acquired
    holder.sync("/fo/lock")
    stat = holder.exists(lock_node)
    assert stat is not None, "lock node of a live session vanished in the failover"
    assert stat.ephemeralOwner == holder_sid
    contender = Lock(contender_client, "/fo/lock", identifier="contender")
    with pytest.raises(LockTimeout):
        contender.acquire(timeout=1.0)
    assert contender.contenders() == ["holder"]  # the timed-out contender cleaned up

    # no acknowledged write lost, nothing invented, the same on both survivors
    expected = {f"n{i:06d}" for i in acked}
    for c in (writer, contender_client):
        c.sync("/fo/w")
        children = set(c.get_children("/fo/w"))
        assert expected <= children, f"acknowledged writes lost: {sorted(expected - children)[:10]}"
        assert children <= {f"n{i:06d}" for i in range(attempted[0])}
    # one session's writes are applied in the order it issued them, across
    # the failover, and those after it carry the new leader's higher epoch
    czxids = [writer.exists(f"/fo/w/n{i:06d}").czxid for i in acked]
    assert czxids == sorted(czxids) and len(set(czxids)) == len(czxids)
    if victim is old_leader:
        shift = 32 if old_leader.impl == "zookeeper" else 48
        assert czxids[acked_at_kill - 1] >> shift < czxids[-1] >> shift, \
            [hex(z) for z in czxids[acked_at_kill - 2:acked_at_kill + 2]]

    # the watch recipes see changes made through the other survivor
    contender_client.set("/fo/cfg", b"v1")
    contender_client.create("/fo/cfg/child", b"")
    with watch_cond:
        assert watch_cond.wait_for(
            lambda: watched[-1:] == [b"v1"] and watched_children[-1:] == [["child"]], WAIT), \
            (watched, watched_children)
    # session still usable for ephemerals after the move
    holder.create("/fo/after", b"", ephemeral=True)

    # a contender queued behind the holder gets the lock once it is released
    got = threading.Event()

    def wait_for_lock():
        if contender.acquire(timeout=WAIT):
            got.set()

    w = threading.Thread(target=wait_for_lock, daemon=True)
    w.start()
    wait_for(lambda: contender.contenders() == ["holder", "contender"], "contender queued")
    assert not got.is_set()
    lock.release()
    assert got.wait(WAIT)
    w.join(WAIT)
    contender.release()


def test_old_form_server_lines(quorum_factory, kazoo_factory):
    """``server.N=127.0.0.1:QP:EP`` with clientPort only in zoo.cfg: the
    ensemble forms and replicates all the same."""
    ens = quorum_factory("corral", client_in_server_lines=False,
                         max_session_timeout=SESSION_TIMEOUT_MS)
    cfg = (ens.members[0].workdir / "zoo.cfg").read_text()
    assert ";" not in cfg and "server.3=" in cfg
    assert sorted(ens.modes().values()) == ["follower", "follower", "leader"]
    a, b, c = spread_clients(kazoo_factory, ens, 3)
    a.create("/old-form", b"ok")
    for x in (b, c):
        x.sync("/old-form")
        assert x.get("/old-form")[0] == b"ok"


def test_session_orphaned_by_dead_leader_expires(ensemble, kazoo_factory):
    """A session whose only server was the leader that died cannot reconnect:
    the new leader expires it, its ephemerals go, and a lock it held passes
    to a waiter on another member; sessions that reconnected are untouched."""
    old_leader = ensemble.leader()
    survivors = [m for m in ensemble.members if m is not old_leader]
    # connect string naming the leader only: nowhere to go once it is gone
    orphan = kazoo_factory(old_leader.hosts, timeout=2.0)
    keeper = client_on(kazoo_factory, ensemble, old_leader)
    observer = client_on(kazoo_factory, ensemble, survivors[0])
    orphan_sid = orphan.client_id[0]
    orphan.create("/orphan-eph", b"", ephemeral=True)
    keeper.create("/keeper-eph", b"", ephemeral=True)
    held = Lock(orphan, "/olock", identifier="orphan")
    assert held.acquire(timeout=WAIT)
    waiter = Lock(observer, "/olock", identifier="waiter")
    acquired = threading.Event()

    def wait_lock():
        if waiter.acquire(timeout=WAIT * 2):
            acquired.set()

    t = threading.Thread(target=wait_lock, daemon=True)
    t.start()
    wait_for(lambda: waiter.contenders() == ["orphan", "waiter"], "waiter queued")

    ensemble.kill(old_leader)
    ensemble.wait_roles(timeout=WAIT, not_leader=old_leader.spec.myid)
    assert acquired.wait(WAIT * 2), "lock of the orphaned session never passed on"
    t.join(WAIT)
    observer.sync("/")
    assert observer.exists("/orphan-eph") is None
    stat = observer.exists("/keeper-eph")
    assert stat is not None and stat.ephemeralOwner == keeper.client_id[0]
    assert orphan_sid not in {observer.exists(f"/olock/{c}").ephemeralOwner
                              for c in observer.get_children("/olock")}
    waiter.release()


def test_killed_leader_rejoins_and_catches_up(ensemble, kazoo_factory):
    """The killed leader, restarted with its data dir, rejoins as a follower
    and serves everything committed while it was down."""
    old_leader = ensemble.leader()
    survivor = next(m for m in ensemble.members if m is not old_leader)
    c = client_on(kazoo_factory, ensemble, survivor)
    c.create("/before", b"1")
    ensemble.kill(old_leader)
    ensemble.wait_roles(timeout=WAIT, not_leader=old_leader.spec.myid)
    c.retry(c.create, "/during", b"2")
    for i in range(20):
        c.retry(c.create, f"/during-{i}", b"")
    restarted = ensemble.restart(old_leader)
    ensemble.wait_roles(timeout=WAIT)
    assert ensemble.modes()[restarted.spec.myid] == "follower"
    r = kazoo_factory(restarted.hosts, timeout=KAZOO_TIMEOUT_S)
    r.sync("/")
    assert r.get("/before")[0] == b"1"
    assert r.get("/during")[0] == b"2"
    assert len([x for x in r.get_children("/") if x.startswith("during-")]) == 20
    # and it takes writes again (forwarded to the leader)
    r.create("/after", b"3")
    c.sync("/after")
    assert c.get("/after")[0] == b"3"


# --------------------------------------------------------------------------
# zkCli.sh


class _Hosts:
    def __init__(self, hosts):
        self.hosts = hosts


WRITER_SCRIPT = """\
create /ens hello
create /ens/a one
create /ens/b two
create -s /ens/q- x
create -e /ens/eph mine
get /ens
set /ens world
get -s /ens
ls /ens
ls -s /ens
stat /ens/a
set /ens/a uno
delete /ens/b
create /ens/b again
delete /ens/b
sync /ens
ls /ens
quit
"""

READER_SCRIPT = """\
sync /ens
get /ens
get /ens/a
get /ens/b
ls /ens
stat /ens/a
get -s /ens/q-0000000002
set /ens/a dos
get /ens/a
quit
"""


def zkcli_across_members(ens):
    """Writes through member 1 (a stdin session), reads through member 2
    (stdin, after sync), one-shot commands through member 3 and through a
    connect string listing all three. Returns (label, rc, out, err) rows."""
    m1, m2, m3 = ens.members
    rows = [("writer on member 1", *zkcli(m1, stdin=WRITER_SCRIPT)),
            ("reader on member 2", *zkcli(m2, stdin=READER_SCRIPT))]
    for cmd in (["stat", "/ens/a"], ["get", "/ens/a"], ["ls", "/ens"],
                ["deleteall", "/ens"]):
        rows.append((f"member 3: {' '.join(cmd)}", *zkcli(m3, *cmd)))
    rows.append(("all members: ls /", *zkcli(_Hosts(ens.hosts), "ls", "/")))
    rows.append(("member 1: stat /ens", *zkcli(m1, "stat", "/ens")))
    return rows


def test_zkcli_across_members(quorum_factory):
    zk = quorum_factory("zookeeper")
    expected_raw = zkcli_across_members(zk)
    zk.stop()
    corral = quorum_factory("corral")
    actual_raw = zkcli_across_members(corral)
    actual = normalise(actual_raw)
    got = {label: (rc, out, err) for label, rc, out, err in actual}

    rc, out, err = got["writer on member 1"]
    assert rc == 0, format_transcript(actual)
    assert out[:2] == ["hello", "world"], out
    assert "[a, b, eph, q-0000000002]" in out
    assert out[-1] == "[a, eph, q-0000000002]"
    assert "Sync is OK" in out

    rc, out, err = got["reader on member 2"]
    assert rc == 0, format_transcript(actual)
    assert out[:3] == ["Sync is OK", "world", "uno"], out
    assert "Node does not exist: /ens/b" in err
    # the writer's session is closed: its ephemeral is gone everywhere
    assert "[a, q-0000000002]" in out
    assert out[-1] == "dos"

    # member 3 sees the reader's write, byte for byte the same Stat as member 2
    raw = {label: (rc, out, err) for label, rc, out, err in actual_raw}
    stat_on_2 = raw["reader on member 2"][1]
    stat_on_3 = raw["member 3: stat /ens/a"][1]
    first = next(i for i, l in enumerate(stat_on_2) if l.startswith("cZxid"))
    # stat /ens/a on member 2 was taken before `set /ens/a dos`: compare the
    # fields that set does not change
    fixed = ("cZxid", "ctime", "ephemeralOwner")
    assert [l for l in stat_on_2[first:first + 11] if l.split(" = ")[0] in fixed] == \
        [l for l in stat_on_3 if l.split(" = ")[0] in fixed]
    assert got["member 3: get /ens/a"] == (0, ["dos"], [])
    assert got["member 3: ls /ens"] == (0, ["[a, q-0000000002]"], [])
    assert got["member 3: deleteall /ens"][0] == 0
    assert got["all members: ls /"] == (0, ["[zookeeper]"], [])
    assert got["member 1: stat /ens"] == (1, [], ["Node does not exist: /ens"])

    compare(normalise(expected_raw), actual)

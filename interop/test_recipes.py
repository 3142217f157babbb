"""kazoo's recipes against Corral, with several clients and threads.

Each test starts one fresh Corral (``corral_server``), opens several kazoo
sessions to it and checks the recipe's promise (mutual exclusion, one leader,
FIFO order, barrier release, exact counts). No timings are asserted; the
timeouts only bound a hang.
"""

import threading
import time

import pytest
from kazoo.exceptions import ConnectionClosedError, LockTimeout
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock, ReadLock, Semaphore, WriteLock
from kazoo.recipe.queue import LockingQueue, Queue
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

WAIT = 30  # seconds: generous bound for anything that should happen "soon"


def run_threads(fns):
    """Run callables in threads; re-raise the first exception."""
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(f), daemon=True) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 4)
        assert not t.is_alive(), "worker thread hung"
    if errors:
        raise errors[0]


class Occupancy:
    """Counts how many holders are inside a critical section at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inside = 0
        self.max_inside = 0
        self.entries = 0

    def enter(self):
        with self.lock:
            self.inside += 1
            self.entries += 1
            self.max_inside = max(self.max_inside, self.inside)

    def leave(self):
        with self.lock:
            self.inside -= 1


def test_lock_mutual_exclusion(corral_server, kazoo_factory):
    clients = [kazoo_factory(corral_server) for _ in range(4)]
    clients[0].create("/counter", b"0")
    occ = Occupancy()
    rounds = 15

    def worker(client, ident):
        def run():
            lock = Lock(client, "/locks/shared", identifier=ident)
            for _ in range(rounds):
                assert lock.acquire(timeout=WAIT), "lock not acquired"
                try:
                    occ.enter()
                    # read-modify-write without a version: only safe under the lock
                    value = int(client.get("/counter")[0])
                    time.sleep(0.001)
                    client.set("/counter", str(value + 1).encode())
                    occ.leave()
                finally:
                    lock.release()
        return run

    fns = []
    for i, c in enumerate(clients):
        for j in range(2):  # two threads per session, each with its own Lock
            fns.append(worker(c, f"c{i}t{j}"))
    run_threads(fns)
    assert occ.max_inside == 1
    assert occ.entries == rounds * len(fns)
    assert int(clients[0].get("/counter")[0]) == rounds * len(fns)
    assert clients[0].get_children("/locks/shared") == []


def test_lock_contenders_and_timeout(corral_server, kazoo_factory):
    a, b = kazoo_factory(corral_server), kazoo_factory(corral_server)
    la = Lock(a, "/locks/x", identifier="alice")
    lb = Lock(b, "/locks/x", identifier="bob")
    assert la.acquire(timeout=WAIT)
    with pytest.raises(LockTimeout):
        lb.acquire(timeout=0.5)
    assert not lb.acquire(blocking=False), "second holder got the lock"
    assert la.contenders() == ["alice"]
    got = threading.Event()

    def wait_for_it():
        assert lb.acquire(timeout=WAIT)
        got.set()

    t = threading.Thread(target=wait_for_it, daemon=True)
    t.start()
    # bob's znode shows up as a contender while alice holds the lock
    deadline = time.monotonic() + WAIT
    while la.contenders() != ["alice", "bob"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert la.contenders() == ["alice", "bob"]
    assert not got.is_set()
    la.release()
    assert got.wait(WAIT)
    t.join(WAIT)
    lb.release()


def test_lock_released_when_holder_session_closes(corral_server, kazoo_factory):
    a, b = kazoo_factory(corral_server), kazoo_factory(corral_server)
    la = Lock(a, "/locks/eph")
    assert la.acquire(timeout=WAIT)
    lb = Lock(b, "/locks/eph")
    a.stop()  # closeSession: the ephemeral lock node goes away
    assert lb.acquire(timeout=WAIT)
    lb.release()


def test_semaphore_bounds_holders(corral_server, kazoo_factory):
    clients = [kazoo_factory(corral_server) for _ in range(5)]
    occ = Occupancy()

    def worker(client, i):
        def run():
            sem = Semaphore(client, "/sem", identifier=f"w{i}", max_leases=2)
            for _ in range(4):
                assert sem.acquire(timeout=WAIT)
                try:
                    occ.enter()
                    time.sleep(0.01)
                    occ.leave()
                finally:
                    sem.release()
        return run

    run_threads([worker(c, i) for i, c in enumerate(clients)])
    assert occ.max_inside <= 2
    assert occ.entries == 20


def test_read_write_lock(corral_server, kazoo_factory):
    clients = [kazoo_factory(corral_server) for _ in range(4)]
    readers = Occupancy()
    writers = Occupancy()
    violations = []

    def reader(c, i):
        def run():
            for _ in range(5):
                lk = ReadLock(c, "/rw", identifier=f"r{i}")
                assert lk.acquire(timeout=WAIT)
                readers.enter()
                if writers.inside:
                    violations.append("reader with writer")
                time.sleep(0.005)
                readers.leave()
                lk.release()
        return run

    def writer(c, i):
        def run():
            for _ in range(5):
                lk = WriteLock(c, "/rw", identifier=f"w{i}")
                assert lk.acquire(timeout=WAIT)
                writers.enter()
                if readers.inside or writers.inside > 1:
                    violations.append("writer not alone")
                time.sleep(0.005)
                writers.leave()
                lk.release()
        return run

    run_threads([reader(clients[0], 0), reader(clients[1], 1), writer(clients[2], 0), writer(clients[3], 1)])
    assert violations == []
    assert writers.max_inside == 1


def test_election_one_leader_then_failover(corral_server, kazoo_factory):
    n = 3
    clients = [kazoo_factory(corral_server) for _ in range(n)]
    elections = [Election(c, "/election", identifier=f"node{i}") for i, c in enumerate(clients)]
    leaders = []
    lock = threading.Lock()
    became_leader = threading.Condition(lock)
    release = [threading.Event() for _ in range(n)]

    def run(i):
        def lead():
            with became_leader:
                leaders.append(i)
                became_leader.notify_all()
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
        with became_leader:
            assert became_leader.wait_for(lambda: len(leaders) >= k, WAIT), leaders

    wait_leaders(1)
    # the other candidates must be registered before we look at contenders
    deadline = time.monotonic() + WAIT
    while len(elections[0].contenders()) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    contenders = elections[0].contenders()
    assert len(contenders) == n and contenders[0] == f"node{leaders[0]}"
    time.sleep(0.2)
    assert len(leaders) == 1, "two leaders at once"

    first = leaders[0]
    # the leader's process dies: its session is closed, its znode vanishes
    clients[first].stop()
    release[first].set()
    wait_leaders(2)
    second = leaders[1]
    assert second != first
    assert elections[second].contenders()[0] == f"node{second}"
    # the second leader steps down voluntarily: the third takes over
    release[second].set()
    wait_leaders(3)
    assert set(leaders) == {0, 1, 2}
    release[leaders[2]].set()
    for t in threads:
        t.join(WAIT)


def test_queue_fifo(corral_server, kazoo_factory):
    producer, consumer = kazoo_factory(corral_server), kazoo_factory(corral_server)
    q_in = Queue(producer, "/queue")
    q_out = Queue(consumer, "/queue")
    items = [f"item-{i}".encode() for i in range(50)]
    for it in items:
        q_in.put(it)
    assert len(q_out) == 50
    got = [q_out.get() for _ in items]
    assert got == items
    assert q_out.get() is None
    # priorities: lower value first, FIFO within a priority
    q_in.put(b"low", priority=200)
    q_in.put(b"high", priority=10)
    q_in.put(b"mid", priority=100)
    q_in.put(b"high2", priority=10)
    assert [q_out.get() for _ in range(4)] == [b"high", b"high2", b"mid", b"low"]


def test_locking_queue_concurrent_consumers(corral_server, kazoo_factory):
    producer = kazoo_factory(corral_server)
    consumers = [kazoo_factory(corral_server) for _ in range(3)]
    q = LockingQueue(producer, "/lqueue")
    n = 60
    q.put_all([str(i).encode() for i in range(n)])
    taken = []
    taken_lock = threading.Lock()

    def consume(c):
        def run():
            lq = LockingQueue(c, "/lqueue")
            while True:
                item = lq.get(timeout=1.0)
                if item is None:
                    if len(lq) == 0:
                        return
                    continue
                with taken_lock:
                    taken.append(int(item))
                assert lq.consume()
        return run

    run_threads([consume(c) for c in consumers])
    assert sorted(taken) == list(range(n))
    assert len(taken) == n  # nothing handed out twice
    # a single consumer sees FIFO order
    q.put_all([b"a", b"b", b"c"])
    lq = LockingQueue(consumers[0], "/lqueue")
    order = []
    for _ in range(3):
        order.append(lq.get(timeout=WAIT))
        lq.consume()
    assert order == [b"a", b"b", b"c"]


def test_barrier(corral_server, kazoo_factory):
    owner = kazoo_factory(corral_server)
    waiters = [kazoo_factory(corral_server) for _ in range(3)]
    Barrier(owner, "/barrier").create()
    passed = []

    def wait(c):
        def run():
            passed.append(Barrier(c, "/barrier").wait(timeout=WAIT))
        return run

    threads = [threading.Thread(target=wait(c), daemon=True) for c in waiters]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert passed == [], "waiters passed a barrier that is still up"
    assert Barrier(owner, "/barrier").remove()
    for t in threads:
        t.join(WAIT)
    assert passed == [True, True, True]
    # a removed barrier does not block
    assert Barrier(owner, "/barrier").wait(timeout=1)


def test_double_barrier(corral_server, kazoo_factory):
    n = 4
    clients = [kazoo_factory(corral_server) for _ in range(n)]
    entered = []
    left = []
    lock = threading.Lock()
    inside_at_entry = []

    def member(c, i):
        def run():
            db = DoubleBarrier(c, "/dbarrier", n, identifier=f"m{i}")
            db.enter()
            with lock:
                entered.append(i)
            # everyone enters before anyone proceeds
            inside_at_entry.append(len(c.get_children("/dbarrier")))
            time.sleep(0.05 * i)
            db.leave()
            with lock:
                left.append(i)
        return run

    run_threads([member(c, i) for i, c in enumerate(clients)])
    assert sorted(entered) == list(range(n))
    assert sorted(left) == list(range(n))
    assert len(inside_at_entry) == n
    assert not clients[0].exists("/dbarrier") or clients[0].get_children("/dbarrier") in ([], ["ready"])


def test_counter_concurrent_increments(corral_server, kazoo_factory):
    clients = [kazoo_factory(corral_server) for _ in range(4)]
    per_thread = 25

    def worker(c):
        def run():
            counter = Counter(c, "/counter")
            for _ in range(per_thread):
                counter += 1
        return run

    run_threads([worker(c) for c in clients for _ in range(2)])
    assert Counter(clients[0], "/counter").value == per_thread * 8
    f = Counter(clients[0], "/fcounter", default=0.0)
    f += 2.5
    f -= 1.0
    assert f.value == 1.5


def test_children_and_data_watch_recipes(corral_server, kazoo_factory):
    watcher, writer = kazoo_factory(corral_server), kazoo_factory(corral_server)
    writer.create("/cfg", b"v0")
    seen_children = []
    seen_data = []
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
    for i in range(1, 6):
        writer.set("/cfg", f"v{i}".encode())
        wait_until(lambda i=i: seen_data[-1] == (f"v{i}".encode(), i))
    writer.create("/cfg/a", b"")
    wait_until(lambda: seen_children[-1] == ["a"])
    writer.create("/cfg/b", b"")
    wait_until(lambda: seen_children[-1] == ["a", "b"])
    writer.delete("/cfg/a")
    wait_until(lambda: seen_children[-1] == ["b"])
    # DataWatch sees every version in order (kazoo re-reads after each event,
    # so intermediate versions may be skipped, never reordered)
    versions = [v for _, v in seen_data]
    assert versions == sorted(versions)


def test_party_membership(corral_server, kazoo_factory):
    from kazoo.recipe.party import Party

    a, b, observer = (kazoo_factory(corral_server) for _ in range(3))
    pa = Party(a, "/party", "alice")
    pb = Party(b, "/party", "bob")
    pa.join()
    pb.join()
    assert sorted(Party(observer, "/party")) == ["alice", "bob"]
    a.stop()  # ephemeral membership ends with the session
    deadline = time.monotonic() + WAIT
    while sorted(Party(observer, "/party")) != ["bob"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(Party(observer, "/party")) == ["bob"]
    pb.leave()
    assert list(Party(observer, "/party")) == []

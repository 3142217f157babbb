"""pytest fixtures of the interop suite: servers on loopback and kazoo clients.

Fixtures
--------
``server_factory``    start("zookeeper"|"corral", spec=None) -> ServerProcess; every
                      server it started is stopped (SIGTERM by PID) at teardown.
``zookeeper_server``  one fresh Apache ZooKeeper 3.8 (standalone) per test.
``corral_server``     one fresh Corral (or whatever INTEROP_CORRAL_CMD says) per test.
``ensemble_factory``  start(kind, n=3) -> [ServerProcess]: members with their own
                      dirs, myid and server.N lines on loopback ports
                      (``servers.allocate_ensemble``), returned once all serve.
``quorum_factory``    start(kind="corral", n=3, **spec_fields) -> servers.Ensemble: members
                      with tickTime 200 (initLimit 10, syncLimit 5), returned once
                      ``srvr`` shows one leader and n-1 followers; stopped at teardown,
                      logs of every member printed when the test failed.
``corral_ensemble``   a fresh 3-member Corral ensemble (``quorum_factory("corral")``);
                      INTEROP_CORRAL_CMD=zookeeper makes it an Apache ZooKeeper one.
``zookeeper_ensemble`` a fresh 3-member Apache ZooKeeper 3.8 ensemble.
``kazoo_factory``     make(server, **kw) -> started KazooClient, stopped at teardown.
                      ``server`` may also be a "host:port,host:port" string.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402

# kazoo is chatty at WARNING about connection drops we cause on purpose.
logging.getLogger("kazoo").setLevel(logging.ERROR)


def pytest_report_header(config):
    if servers.corral_is_zookeeper():
        what = "Apache ZooKeeper (INTEROP_CORRAL_CMD=zookeeper: validating the suite)"
    elif os.environ.get("INTEROP_CORRAL_CMD"):
        what = "command " + os.environ["INTEROP_CORRAL_CMD"]
    else:
        what = str(servers.corral_binary())
    return [f"interop: 'corral' is {what}"]


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# Once a kind of server has failed to come up, later tests fail at once
# instead of each waiting for the readiness timeout (a corral that never
# answers ruok would otherwise cost an hour over the whole suite).
_BROKEN = {}


class ServerFactory:
    def __init__(self, base: Path):
        self.base = base
        self.started = []

    def check(self, kind: str) -> None:
        """Fail now if `kind` already failed to start in this run."""
        if kind in _BROKEN:
            pytest.fail(f"{kind} did not start earlier in this run; not trying again:\n{_BROKEN[kind]}",
                        pytrace=False)

    def start(self, kind: str, spec: servers.ServerSpec = None, wait: bool = True,
              name: str = None) -> servers.ServerProcess:
        self.check(kind)
        name = name or f"{kind}{len(self.started)}"
        try:
            server = servers.start_server(kind, self.base / name, spec=spec, wait=wait)
        except servers.ServerError as e:
            _BROKEN[kind] = str(e)[:4000]
            pytest.fail(f"{kind} did not start: {e}", pytrace=False)
        self.started.append(server)
        return server

    def stop_all(self):
        for s in reversed(self.started):
            s.stop()


@pytest.fixture
def server_factory(tmp_path, request):
    factory = ServerFactory(tmp_path)
    yield factory
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for s in factory.started:
            if s.kind != "zookeeper":
                print(f"\n===== {s!r}\n{s.log_tail(30)}")
    factory.stop_all()


@pytest.fixture
def ensemble_factory(server_factory):
    """start(kind, n=3) -> [ServerProcess]: an n-node ensemble on loopback,
    each member with its own directory and myid; returns once every member
    serves. Stopped with the rest of server_factory's servers."""

    def start(kind, n=3, **spec_fields):
        import dataclasses
        specs = [dataclasses.replace(s, **spec_fields) for s in servers.allocate_ensemble(n)]
        members = [server_factory.start(kind, spec=s, wait=False, name=f"{kind}-{s.myid}") for s in specs]
        for m in members:
            m.wait_ready()
        return members

    return start


@pytest.fixture
def quorum_factory(tmp_path, request):
    """start(kind="corral", n=3, **spec_fields) -> servers.Ensemble, settled
    into one leader and n-1 followers. A kind whose ensemble failed to come up
    once fails at once afterwards (standalone servers of that kind are not
    affected)."""
    started = []

    def start(kind="corral", n=3, **spec_fields):
        key = f"{kind} ensemble"
        if key in _BROKEN:
            pytest.fail(f"a {key} did not start earlier in this run; not trying again:\n{_BROKEN[key]}",
                        pytrace=False)
        try:
            ens = servers.start_ensemble(kind, tmp_path / f"ensemble{len(started)}", n=n, **spec_fields)
        except servers.ServerError as e:
            _BROKEN[key] = str(e)[:6000]
            pytest.fail(f"{key} did not start: {e}", pytrace=False)
        started.append(ens)
        return ens

    yield start
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for ens in started:
            print(f"\n{ens!r}\n{ens.log_tails(40)}")
    for ens in reversed(started):
        ens.stop()


@pytest.fixture
def corral_ensemble(quorum_factory):
    return quorum_factory("corral")


@pytest.fixture
def zookeeper_ensemble(quorum_factory):
    return quorum_factory("zookeeper")


@pytest.fixture
def zookeeper_server(server_factory):
    return server_factory.start("zookeeper")


@pytest.fixture
def corral_server(server_factory):
    return server_factory.start("corral")


@pytest.fixture
def kazoo_factory():
    from kazoo.client import KazooClient

    clients = []

    def make(server, timeout=10.0, **kw):
        hosts = server if isinstance(server, str) else server.hosts
        c = KazooClient(hosts=hosts, timeout=timeout, **kw)
        c.start(timeout=20)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass

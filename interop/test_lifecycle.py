"""Operating the server: SIGTERM stops it promptly, a restart on the same
port and data directory serves at once and still has the data."""

import time

import pytest

import servers

KINDS = ["zookeeper", "corral"]


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_restart_keeps_data(kind, server_factory, kazoo_factory):
    s = server_factory.start(kind, name=f"{kind}-restart")
    c = kazoo_factory(s)
    c.create("/kept", b"v1")
    c.create("/kept/child", b"")
    c.set("/kept", b"v2")
    c.create("/eph", b"", ephemeral=True)
    before = c.exists("/kept")
    c.stop()

    t0 = time.monotonic()
    s.stop(timeout=15)
    assert not s.stopped_by_kill, f"{kind} ignored SIGTERM for 15s"
    assert time.monotonic() - t0 < 15

    # same directory, same port: SO_REUSEADDR lets it bind again at once
    again = servers.start_server(kind, s.workdir, spec=s.spec, attempts=1)
    server_factory.started.append(again)
    assert again.port == s.port
    c2 = kazoo_factory(again)
    data, stat = c2.get("/kept")
    assert data == b"v2"
    assert (stat.czxid, stat.mzxid, stat.version, stat.numChildren) == \
        (before.czxid, before.mzxid, before.version, before.numChildren)
    assert c2.get_children("/kept") == ["child"]
    # the closed session's ephemeral is gone for good
    assert c2.exists("/eph") is None
    # new writes get zxids above everything before the restart
    _, st = c2.create("/after", b"", include_data=True)
    assert st.czxid > before.mzxid

"""Four-letter words on the client port, as operators and monitoring use them.

Each test runs against Apache ZooKeeper 3.8 and against Corral with the same
literal expectations (taken from ZooKeeper). Values that are implementation
details (ZooKeeper's node count includes the root twice, version strings,
latencies) are compared as differences, not absolutes.
"""

import pytest

import servers

KINDS = ["zookeeper", "corral"]


def kv(text, sep):
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, v = line.split(sep, 1)
            out[k.strip()] = v.strip()
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_ruok_isro(kind, server_factory):
    s = server_factory.start(kind)
    assert servers.four_letter(s.port, "ruok") == "imok"
    assert servers.four_letter(s.port, "isro") == "rw"


@pytest.mark.parametrize("kind", KINDS)
def test_srvr_and_mntr_track_the_tree(kind, server_factory, kazoo_factory):
    s = server_factory.start(kind)
    srvr0 = kv(servers.four_letter(s.port, "srvr"), ":")
    mntr0 = kv(servers.four_letter(s.port, "mntr"), "\t")
    assert srvr0["Mode"] == "standalone"
    assert srvr0["Zxid"].startswith("0x")
    assert "Zookeeper version" in srvr0
    assert mntr0["zk_server_state"] == "standalone"

    c = kazoo_factory(s)
    c.create("/a", b"")
    c.create("/a/b", b"")
    c.create("/e1", b"", ephemeral=True)
    c.create("/e2", b"", ephemeral=True)
    c.get("/a", watch=lambda e: None)
    c.get_children("/a", watch=lambda e: None)
    c.exists("/nope", watch=lambda e: None)

    srvr1 = kv(servers.four_letter(s.port, "srvr"), ":")
    mntr1 = kv(servers.four_letter(s.port, "mntr"), "\t")
    assert int(srvr1["Node count"]) - int(srvr0["Node count"]) == 4
    assert int(srvr1["Zxid"], 16) > int(srvr0["Zxid"], 16)
    assert int(mntr1["zk_znode_count"]) - int(mntr0["zk_znode_count"]) == 4
    assert int(mntr1["zk_ephemerals_count"]) == 2
    assert int(mntr1["zk_watch_count"]) == 3
    assert int(mntr1["zk_num_alive_connections"]) >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_whitelist(kind, server_factory):
    s = server_factory.start(kind, spec=servers.ServerSpec(four_letter_whitelist="ruok, srvr"))
    assert servers.four_letter(s.port, "ruok") == "imok"
    assert "Mode: standalone" in servers.four_letter(s.port, "srvr")
    for cmd in ("stat", "mntr", "isro", "conf"):
        assert servers.four_letter(s.port, cmd) == f"{cmd} is not executed because it is not in the whitelist.\n"


@pytest.mark.parametrize("kind", KINDS)
def test_conf(kind, server_factory):
    s = server_factory.start(kind)
    conf = kv(servers.four_letter(s.port, "conf"), "=")
    assert conf["clientPort"] == str(s.port)
    assert conf["tickTime"] == "2000"
    assert conf["minSessionTimeout"] == "4000"
    assert conf["maxSessionTimeout"] == "40000"
    assert conf["maxClientCnxns"] == "60"

"""Each scenario of scenarios.py against Apache ZooKeeper 3.8 and against Corral:
the normalised observations must be equal."""

import difflib
import json
import os
from pathlib import Path

import pytest

import scenarios

DUMP_DIR = os.environ.get("INTEROP_DUMP_DIR")


def _dump(name, kind, lines):
    if not DUMP_DIR:
        return
    d = Path(DUMP_DIR)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.{kind}.txt").write_text("\n".join(lines) + "\n")


def test_there_are_enough_scenarios():
    assert len(scenarios.SCENARIOS) >= 25


# Behaviour that changed between ZooKeeper 3.8 (the reference run here) and 3.9 (what Corral
# implements): scenario -> {start of a 3.8 observation line: the 3.9 line}.
ZK39_CHANGES = {
    # ZOOKEEPER-2590: exists() checks READ on an existing node since 3.9.
    "acl_digest": {"'other exists' | 'ok'": "'other exists' | 'error' | 'NoAuthError'"},
}


def as_zookeeper_39(name, lines):
    changes = ZK39_CHANGES.get(name, {})
    out = []
    for line in lines:
        for prefix, new in changes.items():
            if line.startswith(prefix):
                line = new
                break
        out.append(line)
    return out


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_scenario(name, server_factory, kazoo_factory):
    server_factory.check("corral")  # don't run ZooKeeper for nothing
    spec = scenarios.SPECS.get(name)
    zk = server_factory.start("zookeeper", spec=spec)
    expected = scenarios.format_observations(
        scenarios.run_scenario(name, zk, kazoo_factory))
    zk.stop()
    _dump(name, "zookeeper", expected)

    # the reference must be clean, or the scenario itself is wrong
    assert not [l for l in expected if l.startswith(("'SANITY'", "'SCENARIO ABORTED'"))], \
        "\n".join(expected)

    expected = as_zookeeper_39(name, expected)
    corral = server_factory.start("corral", spec=spec)
    actual = scenarios.format_observations(
        scenarios.run_scenario(name, corral, kazoo_factory))
    _dump(name, "corral", actual)
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected, actual, "zookeeper-3.8", "corral", lineterm=""))
        pytest.fail(f"scenario {name}: observations differ\n{diff}", pytrace=False)

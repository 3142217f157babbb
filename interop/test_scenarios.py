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

    corral = server_factory.start("corral", spec=spec)
    actual = scenarios.format_observations(
        scenarios.run_scenario(name, corral, kazoo_factory))
    _dump(name, "corral", actual)
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected, actual, "zookeeper-3.8", "corral", lineterm=""))
        pytest.fail(f"scenario {name}: observations differ\n{diff}", pytrace=False)

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
    spec = scenarios.SPECS.get(name)
    zk = server_factory.start("zookeeper", spec=spec)
    expected = scenarios.format_observations(
        scenarios.run_scenario(name, zk, kazoo_factory))
    zk.stop()
    _dump(name, "zookeeper", expected)

    corral = server_factory.start("corral", spec=spec)
    try:
        actual = scenarios.format_observations(
            scenarios.run_scenario(name, corral, kazoo_factory))
    except Exception as e:  # a hang or a protocol error on Corral's side
        pytest.fail(f"scenario {name} raised against corral: {e!r}\n"
                    "expected observations:\n" + "\n".join(expected))
    _dump(name, "corral", actual)

    assert not [l for l in expected if l.startswith("'SANITY'")], expected
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected, actual, "zookeeper-3.8", "corral", lineterm=""))
        pytest.fail(f"scenario {name}: observations differ\n{diff}", pytrace=False)

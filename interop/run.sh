#!/usr/bin/env bash
# Interop suite: kazoo scenarios compared with Apache ZooKeeper 3.8, kazoo
# recipes and Debian's zkCli.sh, all against Corral on 127.0.0.1.
#
#   bash interop/run.sh [pytest args...]
#
# Needs: Debian's `zookeeper` package (java + jars + zkCli.sh); Python 3 with
# kazoo, pytest and pytest-timeout (installed here when missing); cargo.
#
# Environment:
#   INTEROP_CORRAL_CMD=zookeeper   run a second Apache ZooKeeper in place of
#                                  Corral (validates the suite itself)
#   INTEROP_CORRAL_CMD='cmd {cfg}' any other server command line
#   INTEROP_CORRAL_BIN=path        a prebuilt corral (skips cargo build)
#   INTEROP_DUMP_DIR=dir           write each scenario's observations there
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import kazoo, pytest, pytest_timeout' 2>/dev/null; then
    echo "interop: installing kazoo pytest pytest-timeout"
    "$PYTHON" -m pip install --quiet kazoo pytest pytest-timeout \
        || "$PYTHON" -m pip install --quiet --break-system-packages kazoo pytest pytest-timeout
fi

if ! dpkg -s zookeeper >/dev/null 2>&1; then
    echo "interop: Debian package 'zookeeper' is not installed (apt-get install -y zookeeper)" >&2
    exit 1
fi

if [ -z "${INTEROP_CORRAL_CMD:-}" ] && [ -z "${INTEROP_CORRAL_BIN:-}" ]; then
    echo "interop: cargo build --release --bin corral"
    cargo build --release --bin corral
    export INTEROP_CORRAL_BIN="$PWD/target/release/corral"
fi

set +e
"$PYTHON" -m pytest -q -rfE -p no:cacheprovider --timeout=300 interop/ "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "interop: no tests were collected" >&2
    exit 1
fi
exit "$rc"

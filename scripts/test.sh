#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine, then run them.
#   bash scripts/test.sh            # the whole suite (fault and load tests included)
#   bash scripts/test.sh -m "not slow"   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: redis-server (each test starts its own), chromium (the HTML report is
# checked in a real browser), iproute2 (test hosts in network namespaces), openssl (TLS);
# PostgreSQL below.
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# PostgreSQL for the history tests (each test makes and drops a database of its own). A server
# already running is used as it is; one this script installs or starts gets a password for
# its postgres role, since a fresh cluster does not trust TCP connections.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends postgresql
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
  for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  $SUDO su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'benchctl-test'\""
fi
# RabbitMQ for the broker tests (each test makes and deletes a vhost of its own with rabbitmqctl;
# the TLS test starts a node of its own from the same rabbitmq-server). A server already
# answering on 5672 is used as it is.
if ! (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  if ! command -v rabbitmq-server >/dev/null; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends rabbitmq-server
  fi
  $SUDO rabbitmq-server -detached || true
  for _ in $(seq 120); do (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.5; done
fi
$SUDO rabbitmqctl await_startup -t 60 >/dev/null

export BENCHCTL_TEST_POSTGRES="${BENCHCTL_TEST_POSTGRES:-postgresql://postgres:benchctl-test@127.0.0.1:5432/postgres}"

# torch first, pinned: a plain requirement would pull a multi-GB CUDA build.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[worker,ort,openvino,dev]'

# The lint gate (config in pyproject.toml), then the suite.
.venv/bin/ruff check .

export HF_HUB_OFFLINE=1
# Two tests side by side (pytest-xdist). The fault tests, which time cells against short limits
# and wait out broker timeouts, share one lane (tests/conftest.py: xdist_group "timed"), so two
# of them never compete for the CPU; the rest fill the other lane and theirs as they free up.
# BENCHCTL_TEST_JOBS=1 runs one test at a time; more on a machine with more cores.
jobs="${BENCHCTL_TEST_JOBS:-2}"
parallel=()
[ "$jobs" -gt 1 ] && parallel=(-n "$jobs" --dist loadgroup)
# The slowest tests are listed at the end: where the suite's time goes.
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "${parallel[@]}" "$@"

"""Across hosts: Redis, two workers and the controller each on a test host of its own —
network namespaces joined by veth links to a bridge — each worker with its own hostname (UTS
namespace). Cells cross a real network; the report shows two hosts.

Traffic goes only to the addresses this test gives its own namespaces, which it removes at the end.
"""

import os
import shutil
import subprocess
import uuid

import pytest
from conftest import RedisServer, benchctl, cell_id, load_json, wait_for, worker_env

from bench_protocol import keys

pytestmark = pytest.mark.slow


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture
def test_hosts():
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("iproute2 or unshare is not installed")
    tag = uuid.uuid4().hex[:4]
    net = f"10.253.{os.getpid() % 200 + 20}"
    names = {role: f"bc{tag}-{role}" for role in ("redis", "ctl", "w1", "w2")}
    made = []
    try:
        for ns in names.values():
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"this machine refuses to make network namespaces: {exc.stderr.strip()}")
    hub = names["redis"]
    addrs = {"redis": f"{net}.1"}
    links = {}  # each host's end of its link to the hub
    try:
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "addr", "add", f"{addrs['redis']}/24", "dev", "br0")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i, role in enumerate(("ctl", "w1", "w2"), start=2):
            ns, a, b = names[role], f"v{tag}{role}", f"p{tag}{role}"
            sh("ip", "link", "add", a, "netns", ns, "type", "veth", "peer", "name", b, "netns", hub)
            sh("ip", "-n", ns, "addr", "add", f"{net}.{i}/24", "dev", a)
            sh("ip", "-n", ns, "link", "set", a, "up")
            sh("ip", "-n", hub, "link", "set", b, "master", "br0")
            sh("ip", "-n", hub, "link", "set", b, "up")
            addrs[role] = f"{net}.{i}"
            links[role] = a
        yield names, addrs, links
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_cells_cross_a_network_and_the_report_shows_each_host(test_hosts, workers, tiny_model, tmp_path):
    names, addrs, _ = test_hosts
    # A Redis reachable from other hosts runs with a password (protected mode refuses otherwise).
    redis = RedisServer(tmp_path / "redis", bind=addrs["redis"], netns=names["redis"], password="cross-host-pw").start()
    url = redis.url
    ctl = ["ip", "netns", "exec", names["ctl"]]
    try:
        for role, extra in (("w1", []), ("w2", ["--threads", "1"])):
            host = f"host-{role}"
            workers(url, device="cpu", queue="cpu", name=f"cpu-{role}@{host}", extra=extra, env=worker_env(BC_HOST=host),
                    prefix=["ip", "netns", "exec", names[role], "unshare", "--uts", "sh", "-c",
                            'hostname "$BC_HOST" && exec "$0" "$@"'])
        wait_for(lambda: benchctl("workers", "--broker", url, prefix=ctl).stdout.count("idle") == 2, 90,
                 "both workers to register over the network")

        # The controller's host cannot see a Redis on its own loopback: only the network path exists.
        local = benchctl("workers", "--broker", f"redis://:cross-host-pw@127.0.0.1:{redis.port}/0", prefix=ctl)
        assert local.returncode != 0 and "cannot reach Redis" in local.stderr

        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1,2,3,4,5,6", "--seq-lens", "16", "--model",
                       str(tiny_model), "--warmup", "1", "--iterations", "5", "--min-time", "0.3", "--broker", url,
                       "--wait", "--timeout", "180", "--out", str(tmp_path / "out"), prefix=ctl, timeout=240)
        assert res.returncode == 0, res.stderr
        doc = load_json(tmp_path / "out" / "results.json")
        assert len(doc["cells"]) == 6 and all(c["status"] == "ok" for c in doc["cells"])
        hosts = {c["host"] for c in doc["cells"]}
        assert hosts == {"host-w1", "host-w2"}  # the pool spread its cells over both hosts
        assert {fp["hostname"] for fp in doc["fingerprints"].values()} == {"host-w1", "host-w2"}
        md = (tmp_path / "out" / "report.md").read_text()
        assert "### CPU (host-w1)" in md and "### CPU (host-w2)" in md
        assert "pool cpu mixed hardware" in md
    finally:
        for w in workers.all:
            w.stop()
        redis.stop()


def test_hosts_per_pool_puts_each_cell_on_distinct_hosts(test_hosts, workers, tiny_model, tmp_path):
    """--hosts-per-pool 2 on a pool of two hosts: each cell's two repeats land one on each host
    (a host that took its share hands the other back), and the report splits the pool's spread
    by host. Asking for three hosts of a pool of two is refused, naming the hosts there are."""
    names, addrs, _ = test_hosts
    redis = RedisServer(tmp_path / "redis", bind=addrs["redis"], netns=names["redis"], password="cross-host-pw").start()
    url = redis.url
    ctl = ["ip", "netns", "exec", names["ctl"]]
    try:
        for role in ("w1", "w2"):
            host = f"host-{role}"
            workers(url, device="cpu", queue="cpu", name=f"cpu-{role}@{host}", env=worker_env(BC_HOST=host),
                    prefix=["ip", "netns", "exec", names[role], "unshare", "--uts", "sh", "-c",
                            'hostname "$BC_HOST" && exec "$0" "$@"'])
        wait_for(lambda: benchctl("workers", "--broker", url, prefix=ctl).stdout.count("idle") == 2, 90,
                 "both workers to register over the network")
        common = ["--devices", "cpu", "--batch-sizes", "1,2,3", "--seq-lens", "16", "--model", str(tiny_model),
                  "--warmup", "1", "--iterations", "3", "--min-time", "0.2", "--broker", url]
        refused = benchctl("submit", *common, "--hosts-per-pool", "3", prefix=ctl)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "--hosts-per-pool 3: pool cpu has 2 live hosts (host-w1, host-w2)" in refused.stderr, refused.stderr
        res = benchctl("submit", *common, "--hosts-per-pool", "2", "--wait", "--timeout", "180",
                       "--out", str(tmp_path / "out"), prefix=ctl, timeout=240)
        assert res.returncode == 0, res.stderr
        doc = load_json(tmp_path / "out" / "results.json")
        assert len(doc["cells"]) == 6 and all(c["status"] == "ok" for c in doc["cells"]), [c["error"] for c in doc["cells"]]
        for b in (1, 2, 3):
            assert sorted(c["host"] for c in doc["cells"] if c["batch_size"] == b) == ["host-w1", "host-w2"], b
        md = (tmp_path / "out" / "report.md").read_text()
        assert "## Hosts of one pool" in md and "host-w1" in md and "host-w2" in md
    finally:
        for w in workers.all:
            w.stop()
        redis.stop()


CELL_S = 8  # the cell's timed seconds: long enough that a loaded machine sees it start before it ends
CLAIM_TTL = 8  # the workers' claim TTL (BENCHCTL_CLAIM_TTL; 20 s by default): how soon a lost host's cell is free


def test_a_worker_whose_host_vanishes_has_its_cell_measured_again(test_hosts, workers, tiny_model, tmp_path):
    """A host that drops off the network mid-cell (its link taken down: no FIN, no RST, as a
    pulled cable or a reclaimed instance): its claim lapses (BENCHCTL_CLAIM_TTL, 8 s here), the
    other host's worker queues the cell again and measures it within that, a heartbeat and the
    cell, with the default visibility timeout."""
    import time

    names, addrs, links = test_hosts
    redis = RedisServer(tmp_path / "redis", bind=addrs["redis"], netns=names["redis"], password="cross-host-pw").start()
    url = redis.url
    ctl = ["ip", "netns", "exec", names["ctl"]]

    def rcli(*args: str) -> str:  # Redis as the controller's host sees it: only over the network
        out = subprocess.run([*ctl, "redis-cli", "--no-auth-warning", "-a", "cross-host-pw", "-h", addrs["redis"],
                              "-p", str(redis.port), *args], capture_output=True, text=True, timeout=20)
        return out.stdout.strip()

    try:
        for role in ("w1", "w2"):
            workers(url, device="cpu", queue="cpu", name=f"cpu-{role}@host-{role}",
                    prefix=["ip", "netns", "exec", names[role]], env=worker_env(BENCHCTL_CLAIM_TTL=CLAIM_TTL))
        wait_for(lambda: benchctl("workers", "--broker", url, prefix=ctl).stdout.count("idle") == 2, 90,
                 "both workers to register over the network")
        res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--seq-lens", "16", "--model",
                       str(tiny_model), "--warmup", "0", "--iterations", "1", "--min-time", str(CELL_S), "--time-limit", "60",
                       "--broker", url, prefix=ctl)
        assert res.returncode == 0, res.stderr
        run_id = res.stdout.split()[0]
        cell = cell_id(run_id)

        def holder():
            return next((role for role in ("w1", "w2") if rcli("GET", keys.worker_current(f"cpu-{role}@host-{role}")) == cell),
                        None)
        gone = wait_for(holder, 60, "a worker to start the cell")
        other = "w2" if gone == "w1" else "w1"
        sh("ip", "-n", names[gone], "link", "set", links[gone], "down")
        vanished_at = time.monotonic()
        # The link went down while the cell still ran: the worker that held it has not saved it.
        assert rcli("HGET", keys.run_cells(run_id), cell) == "running"
        recovery = CLAIM_TTL + 10  # the claim lapses, a heartbeat of the other worker sees it
        wait_for(lambda: rcli("HGET", keys.run_cells(run_id), cell) == "ok", recovery + CELL_S + 30,
                 "the cell to be measured again")
        took = time.monotonic() - vanished_at
        assert took < recovery + CELL_S + 15, f"recovered after {took:.0f}s"
        assert rcli("HLEN", keys.run_cells(run_id)) == "1"
        col = benchctl("collect", run_id, "--broker", url, "--timeout", "30", "--out", str(tmp_path / "out"),
                       "--no-history", prefix=ctl)
        assert col.returncode == 0, col.stderr
        (rec,) = load_json(tmp_path / "out" / "results.json")["cells"]
        assert rec["worker"] == f"cpu-{other}@host-{other}" and rec["status"] == "ok"
    finally:
        for w in workers.all:
            w.stop()
        redis.stop()

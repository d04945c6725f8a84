"""Workers are who they say they are, on real redis-server, RabbitMQ and bench-worker processes:
one live worker per name, listed live only while it consumes, a device the host has, a pool of
the device's kind. Each refusal is one line and a non-zero exit, never a traceback, and leaves
nothing in the registry."""

import json
import os
import subprocess
import time

import pytest
from conftest import BIN, RABBITMQ_PORT, RABBITMQCTL_CMD, benchctl, rabbitmqctl, wait_for, worker_env

from bench_protocol import keys
from bench_protocol.errors import SpecError
from bench_workers.worker import identity


def worker_cmd(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "bench-worker"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or worker_env())


def refused(res: subprocess.CompletedProcess, code: int, *expected: str) -> str:
    """bench-worker exited ``code`` with exactly one error line saying ``expected`` (its log lines
    aside) and no traceback."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode == code, (res.returncode, out)
    errors = [line for line in res.stderr.splitlines() if line.startswith("bench-worker: error:")]
    assert len(errors) == 1, res.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def registry(client) -> list[str]:
    return sorted(client.keys(keys.PREFIX + "worker*"))


# -- the checks themselves ------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("device, pool", [("cpu", "cuda"), ("cpu", "gpu-a100"), ("cuda:1", "cpu"), ("cuda", "mps"),
                                          ("mps", "cpu-c7i")])
def test_a_pool_of_another_device_kind_is_refused_unless_allowed(device, pool):
    with pytest.raises(SpecError, match="--allow-pool-mismatch"):
        identity.check_pool(device, pool)
    identity.check_pool(device, pool, allow_mismatch=True)


@pytest.mark.fast
@pytest.mark.parametrize("device, pool", [("cpu", "cpu"), ("cpu", "cpu-c7i"), ("cuda:1", "cuda"), ("cuda", "h100"),
                                          ("cpu", "fast-box")])
def test_a_pool_of_the_device_kind_or_of_no_kind_is_accepted(device, pool):
    identity.check_pool(device, pool)


@pytest.mark.fast
def test_a_missing_device_is_one_line_naming_the_reason_and_the_opt_out():
    with pytest.raises(SpecError) as err:
        identity.check_device("cuda:1", "torch 2.13.0+cpu is built without CUDA")
    assert str(err.value).startswith("--device cuda:1 is not usable on this host: torch 2.13.0+cpu is built without CUDA")
    assert "--allow-missing-device" in str(err.value) and "\n" not in str(err.value)
    identity.check_device("cuda:1", "torch 2.13.0+cpu is built without CUDA", allow_missing=True)
    identity.check_device("cpu", None)


# -- refusals of bench-worker ----------------------------------------------------------------

def test_a_cpu_worker_on_a_cuda_pool_refuses_and_starts_only_when_forced(redis_server, workers):
    r = redis_server.client()
    res = worker_cmd("--device", "cpu", "--queue", "cuda", "--name", "mixed@test", "--broker", redis_server.url)
    refused(res, 2, "--queue cuda is a cuda pool but --device cpu is a cpu device", "--allow-pool-mismatch")
    assert registry(r) == []
    w = workers(redis_server.url, device="cpu", queue="cuda", name="mixed@test", extra=["--allow-pool-mismatch"], client=r)
    info = json.loads(r.get(keys.worker(w.name)))
    assert (info["pool"], info["device"]) == ("cuda", "cpu")


def test_a_gpu_worker_on_a_host_whose_torch_cannot_see_that_gpu_refuses(redis_server):
    """cuda:63 is on no host (pinned to CUDA_VISIBLE_DEVICES=63, torch sees no GPU): decided in
    the fingerprint's subprocess, so the worker's parent never initialises CUDA."""
    env = worker_env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    res = worker_cmd("--device", "cuda:63", "--name", "ghost@test", "--broker", redis_server.url, env=env)
    refused(res, 2, "--device cuda:63 is not usable on this host:", "--allow-missing-device")
    assert registry(redis_server.client()) == []


def test_a_second_live_worker_of_one_name_refuses_and_a_dead_ones_name_is_taken_over(redis_server, workers):
    r = redis_server.client()
    first = workers(redis_server.url, name="twin@test", client=r)
    owner = json.loads(r.get(keys.worker_owner("twin@test")))
    assert owner["pid"] == first.proc.pid
    t0 = time.monotonic()
    res = worker_cmd("--device", "cpu", "--name", "twin@test", "--broker", redis_server.url)
    line = refused(res, 2, "a live worker named twin@test is running", f"pid {first.proc.pid}", "another --name")
    assert time.monotonic() - t0 < 60, line
    # The first one is untouched: still listed, still the name's owner.
    assert json.loads(r.get(keys.worker("twin@test")))["pid"] == first.proc.pid
    assert json.loads(r.get(keys.worker_owner("twin@test")))["instance"] == owner["instance"]

    first.kill()  # SIGKILL: its registration stays until its TTL lapses
    second = workers(redis_server.url, name="twin@test", wait=False)
    second.wait_ready(r, timeout=90)
    assert json.loads(r.get(keys.worker("twin@test")))["pid"] == second.proc.pid
    assert b"lapsed" in second.log.read_bytes()
    second.stop()  # a clean stop gives the name back and unlists it
    assert r.get(keys.worker_owner("twin@test")) is None and r.get(keys.worker("twin@test")) is None


def test_a_worker_that_finds_its_name_taken_while_it_runs_stops(redis_server, workers):
    """Cut off long enough for its name to lapse, a worker may come back to find another process
    holding it: it stops rather than run as a second worker of one name, and leaves the other's
    registration alone."""
    r = redis_server.client()
    w = workers(redis_server.url, name="usurped@test", client=r)
    other = {"instance": "another-process", "hostname": "elsewhere", "pid": 4242}
    r.set(keys.worker_owner(w.name), json.dumps(other), px=60_000)
    wait_for(lambda: w.proc.poll() is not None, 60, "the worker to stop")
    assert b"another worker named usurped@test (pid 4242 on elsewhere) holds the name now" in w.log.read_bytes()
    assert b"Traceback" not in w.log.read_bytes()
    assert r.get(keys.worker(w.name)) is None  # unlisted
    assert json.loads(r.get(keys.worker_owner(w.name))) == other  # the holder's key untouched


# -- listed live only while it can consume (RabbitMQ) ------------------------------------------

@pytest.fixture
def vhost():
    name = f"benchctl-identity-{os.getpid()}-{time.monotonic_ns()}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    subprocess.run([*RABBITMQCTL_CMD, "delete_vhost", name], capture_output=True, timeout=60)


@pytest.mark.parametrize("fault", ["password", "vhost"])
def test_a_worker_the_broker_refuses_does_not_start(redis_server, vhost, fault):
    url = (f"amqp://guest:not-the-password@127.0.0.1:{RABBITMQ_PORT}/{vhost}" if fault == "password"
           else f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/{vhost}-deleted")
    res = worker_cmd("--device", "cpu", "--name", "refused@test", "--broker", url, "--store", redis_server.url,
                     timeout=60)
    refused(res, 3, "refused the credentials" if fault == "password" else "refused the virtual host")
    assert "not-the-password" not in res.stdout + res.stderr
    assert registry(redis_server.client()) == []


def test_a_worker_whose_vhost_is_deleted_is_unlisted_until_it_consumes_again(redis_server, vhost, workers):
    r = redis_server.client()
    url = f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/{vhost}"
    env = worker_env(BENCHCTL_STORE_URL=redis_server.url)
    w = workers(url, name="orphan@test", env=env, client=r)
    listed = benchctl("workers", "--json", "--broker", url, env=env)
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == [w.name], listed.stderr
    rabbitmqctl("delete_vhost", vhost)
    wait_for(lambda: r.get(keys.worker(w.name)) is None, 30, "the worker to be unlisted once it cannot consume")
    time.sleep(4)  # beyond a heartbeat: it stays unlisted while it cannot consume
    assert r.get(keys.worker(w.name)) is None and w.proc.poll() is None
    res = benchctl("submit", "--devices", "cpu", "--batch-sizes", "1", "--broker", url, env=env)
    assert res.returncode == 4 and "no live worker for pool cpu" in res.stderr, res.stderr
    rabbitmqctl("add_vhost", vhost)  # the broker back: consuming again, listed again
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    wait_for(lambda: r.get(keys.worker(w.name)), 90, "the worker to be listed again once it consumes")

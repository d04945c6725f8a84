"""Real parts for the tests: a redis-server of our own on a free port, tiny models on disk,
bench-worker subprocesses on their own queues, and the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import save_tiny_distilbert, save_tiny_gpt2  # noqa: E402

from bench_protocol.spec import CellSpec  # noqa: E402

BIN = Path(sys.executable).parent
# Runs made by the tests go to a history of their own, never the user's.
os.environ["BENCHCTL_HISTORY"] = str(Path(__import__("tempfile").mkdtemp(prefix="benchctl-history-")) / "history.db")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


# Tests that time cells against short limits or wait out a broker's timeouts: run side by side
# (pytest-xdist), they share one lane, so two of them never compete for the CPU; every other
# test may run beside them.
TIMED_MODULES = {"test_faults", "test_across_hosts"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in TIMED_MODULES:
            item.add_marker(pytest.mark.xdist_group("timed"))


def cell_id(run_id: str, pool: str = "cpu", batch: int = 1, seq: int = 16, dtype: str = "fp32", **axes) -> str:
    """A cell's id as the spec makes it (every axis beyond these at its default)."""
    return CellSpec(run_id=run_id, pool=pool, batch_size=batch, seq_len=seq, dtype=dtype, **axes).cell_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server subprocess the test owns: it can be stopped and started again."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None, aof: bool = False,
                 bind: str = "127.0.0.1", extra: list[str] | None = None, netns: str | None = None,
                 username: str | None = None) -> None:
        self.workdir, self.port, self.password, self.aof, self.bind = workdir, port or free_port(), password, aof, bind
        self.username = username  # an ACL user (set up through ``extra``) instead of requirepass
        self.extra = extra or []
        self.netns = netns
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f"{self.username or ''}:{self.password}@" if self.password else ""
        return f"redis://{auth}{self.bind}:{self.port}/0"

    def start(self) -> RedisServer:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", self.bind, "--dir", str(self.workdir), "--save", "",
               "--appendonly", "yes" if self.aof else "no", "--appendfsync", "always", "--daemonize", "no",
               "--logfile", str(self.workdir / "redis.log"), *self.extra]
        if self.password and not self.username:
            cmd += ["--requirepass", self.password]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        def up():
            try:
                return redis.Redis(host=self.bind, port=self.port, username=self.username, password=self.password,
                                   socket_timeout=1).ping() \
                    if not self.netns else self._ping_in_ns()
            except Exception:
                return False
        wait_for(up, 20, f"redis-server on port {self.port}")
        return self

    def _ping_in_ns(self) -> bool:
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        cmd = ["ip", "netns", "exec", self.netns, "redis-cli", *auth, "-h", self.bind, "-p", str(self.port), "ping"]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() == "PONG"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self):
        import redis

        return redis.Redis(host=self.bind, port=self.port, username=self.username, password=self.password,
                           decode_responses=True, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
RABBITMQ_PORT = int(os.environ.get("BENCHCTL_TEST_RABBITMQ_PORT", "5672"))


RABBITMQCTL_CMD = [RABBITMQCTL] if os.getuid() == 0 else ["sudo", "-n", RABBITMQCTL]  # it needs the node's cookie


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([*RABBITMQCTL_CMD, *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"rabbitmqctl {' '.join(args)}: {res.stdout}{res.stderr}"
    return res


class Deployment:
    """A broker and a store for one test: Redis alone, or RabbitMQ (a vhost of the machine's
    server, made and deleted here) carrying the tasks with the records in our own Redis.
    ``url`` is what ``--broker`` takes; ``client()`` reads the records."""

    def __init__(self, kind: str, redis_server: RedisServer, vhost: str | None = None) -> None:
        self.kind, self.redis, self.vhost = kind, redis_server, vhost
        self.url = redis_server.url if kind == "redis" else \
            f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/{vhost}"
        self.store_url = redis_server.url

    def client(self):
        return self.redis.client()

    def queue_depth(self, queue: str) -> int:
        if self.kind == "redis":
            return self.client().llen(queue)
        out = rabbitmqctl("list_queues", "-p", self.vhost, "name", "messages", "--quiet", "--no-table-headers").stdout
        return sum(int(n) for name, n in (line.split() for line in out.splitlines() if line.strip()) if name == queue)

    def purge(self, queue: str) -> None:
        """Lose the queue's messages (as a broker that kept nothing would); records stay."""
        if self.kind == "redis":
            self.client().delete(queue)
        else:
            rabbitmqctl("purge_queue", "-p", self.vhost, queue)


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


class RabbitNode:
    """A RabbitMQ node of the test's own, on free ports (for TLS, or a test that must stop the
    broker): its own node name, data and config, started from the machine's rabbitmq-server."""

    def __init__(self, tls: dict | None = None) -> None:
        import tempfile

        # rabbitmq-server drops to the rabbitmq user: its folder must be that user's.
        self.dir = Path(tempfile.mkdtemp(prefix="benchctl-rmq-"))
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"benchctl{self.port}@localhost"
        lines = ["loopback_users = none"]
        if tls:  # copied in: the node cannot read the test's own (private) folders
            for role, path in tls.items():
                shutil.copy(path, self.dir / f"tls-{role}.pem")
            lines += ["listeners.tcp = none", f"listeners.ssl.1 = 127.0.0.1:{self.port}",
                      f"ssl_options.cacertfile = {self.dir}/tls-ca.pem", f"ssl_options.certfile = {self.dir}/tls-cert.pem",
                      f"ssl_options.keyfile = {self.dir}/tls-key.pem", "ssl_options.verify = verify_peer",
                      "ssl_options.fail_if_no_peer_cert = true"]
        else:
            lines += [f"listeners.tcp.1 = 127.0.0.1:{self.port}"]
        (self.dir / "rabbit.conf").write_text("\n".join(lines) + "\n")
        (self.dir / "plugins").write_text("[].\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> RabbitNode:
        os.chmod(self.dir, 0o755)
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], capture_output=True)
        env = dict(os.environ, RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                   RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.dist_port),
                   RABBITMQ_CONFIG_FILE=str(self.dir / "rabbit.conf"), RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
                   RABBITMQ_LOG_BASE=str(self.dir / "log"), RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "plugins"),
                   RABBITMQ_PID_FILE=str(self.dir / "pid"))
        self.log = open(self.dir / "server.out", "ab")
        self.proc = subprocess.Popen([shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return self.proc.poll() is not None  # ended: reported below
        wait_for(up, 90, f"RabbitMQ node {self.node}")
        if self.proc.poll() is not None:
            raise AssertionError(f"RabbitMQ node {self.node} did not start: {(self.dir / 'server.out').read_text()[-2000:]}")
        return self

    def stop(self, keep_data: bool = False, sig: int = signal.SIGTERM) -> None:
        """Stop the node (``keep_data`` to start it again, as a restart: SIGKILL is a crash).
        The Erlang VM runs in a session of its own (rabbitmq-server switches user): it is
        stopped by the pid it wrote, then the wrapper."""
        try:
            beam = int((self.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            beam = None
        for pid in filter(None, (beam, self.proc.pid if self.proc else None)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _running(pid):
                time.sleep(0.2)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc:
            self.proc.wait(10)
        if not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(params=["redis", "rabbitmq"])
def deployment(request, tmp_path, monkeypatch):
    """The distributed and fault tests run on both brokers."""
    server = RedisServer(tmp_path / "redis").start()
    vhost = None
    if request.param == "rabbitmq":
        vhost = f"benchctl-test-{os.getpid()}-{time.monotonic_ns()}"
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        monkeypatch.setenv("BENCHCTL_STORE_URL", server.url)  # workers and the CLI inherit it
    yield Deployment(request.param, server, vhost)
    server.stop()
    if vhost:
        subprocess.run([*RABBITMQCTL_CMD, "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_tiny_distilbert(root / "tiny")
    save_tiny_distilbert(root / "tiny-config-only", with_weights=False)
    save_tiny_distilbert(root / "tiny-with-tokenizer", tokenizer=True)
    save_tiny_gpt2(root / "tiny-gpt2")
    return root


@pytest.fixture(scope="session")
def tiny_model(models_dir) -> Path:
    return models_dir / "tiny"


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("BENCHCTL_BROKER_URL", None)
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Worker:
    def __init__(self, args: list[str], log: Path, env: dict, prefix: list[str] | None = None) -> None:
        self.args, self.log, self.env = args, log, env
        self.prefix = prefix or []
        self.proc: subprocess.Popen | None = None
        self.name = args[args.index("--name") + 1]

    def start(self) -> Worker:
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen(self.prefix + [str(BIN / "bench-worker"), *self.args], stdout=fh,
                                     stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return self

    def wait_ready(self, client, timeout: float = 60) -> Worker:
        from bench_protocol import keys

        wait_for(lambda: client.exists(keys.worker(self.name)) and b"ready" in self.log.read_bytes(), timeout,
                 f"worker {self.name} to register (log: {self.log})")
        return self

    def kill(self) -> None:
        """SIGKILL the worker's main process: the crash the fault tests are about."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        else:
            try:  # an orphaned child, if any
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, AttributeError, TypeError):
                pass


@pytest.fixture
def workers(tmp_path, models_dir):
    """Start bench-worker subprocesses: workers.start(url, device='cpu', queue='cpu', ...)."""
    started: list[Worker] = []

    def start(url: str, device: str = "cpu", queue: str | None = None, name: str | None = None, extra: list[str] = (),
              env: dict | None = None, prefix: list[str] | None = None, wait: bool = True, client=None) -> Worker:
        queue = queue or device
        name = name or f"{queue}-w{len(started)}@test"
        args = ["--device", device, "--queue", queue, "--name", name, "--broker", url, "--models-dir", str(models_dir),
                "--loglevel", "INFO", *extra]
        w = Worker(args, tmp_path / f"worker-{len(started)}.log", env or worker_env(), prefix).start()
        started.append(w)
        if wait and client is not None:
            w.wait_ready(client)
        return w

    start.all = started
    yield start
    for w in started:
        w.stop()


def benchctl(*args: str, env: dict | None = None, timeout: float = 300, prefix: list[str] | None = None,
             **kw) -> subprocess.CompletedProcess:
    """The real CLI, as a user runs it."""
    return subprocess.run((prefix or []) + [str(BIN / "benchctl"), *args], capture_output=True, text=True,
                          env=env or worker_env(), timeout=timeout, **kw)


def read_record(client, cell_id: str) -> dict | None:
    """A cell's record as stored in Redis (compact: bench_protocol/record_codec.py)."""
    from redis.client import NEVER_DECODE

    from bench_protocol import keys, record_codec

    raw = client.execute_command("GET", keys.cell(cell_id), **{NEVER_DECODE: True})
    return record_codec.decode(raw) if raw else None


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def tcp_server(on_connection):
    """A TCP server on a free port of 127.0.0.1 that hands each connection to
    ``on_connection(conn)`` on a thread of its own; yields a redis:// URL naming it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                threading.Thread(target=on_connection, args=(sock.accept()[0],), daemon=True).start()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


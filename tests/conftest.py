"""Real parts for the tests: a redis-server of our own on a free port, tiny models on disk,
bench-worker subprocesses on their own queues, and the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
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


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())

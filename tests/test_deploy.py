"""Deployment files, checked without a Docker engine: parsed, and their commands run as plain
processes against a test Redis."""

import re
from pathlib import Path

import pytest
import yaml
from conftest import benchctl, load_json

from bench_workers.worker.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_redis_cpu_gpu_and_controller():
    services = compose()["services"]
    assert {"redis", "worker-cpu", "worker-gpu", "controller"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("worker-cpu", "worker-gpu", "controller"):
        env = services[name]["environment"]
        assert env["BENCHCTL_BROKER_URL"].startswith("${BENCHCTL_BROKER_URL:-redis://")
        assert env["BENCHCTL_STORE_URL"].startswith("redis://") and "@redis:6379" in env["BENCHCTL_STORE_URL"]


def test_compose_rabbitmq_service_matches_the_documented_url():
    """The compose file's RabbitMQ user and vhost are those of the URL its header shows."""
    text = (ROOT / "docker-compose.yml").read_text()
    rabbit = compose()["services"]["rabbitmq"]
    env = rabbit["environment"]
    url = re.search(r'BENCHCTL_BROKER_URL="(amqp://[^"]+)"', text).group(1)
    assert url.startswith(f"amqp://{env['RABBITMQ_DEFAULT_USER']}:") and url.endswith(f"@rabbitmq:5672/{env['RABBITMQ_DEFAULT_VHOST']}")
    assert "rabbitmq" in rabbit["profiles"] and "5672" in rabbit["ports"][0]


def test_dockerfiles_copy_what_exists_and_run_our_commands():
    for name in ("Dockerfile.worker", "Dockerfile.controller"):
        text = (ROOT / "deploy" / name).read_text()
        for line in re.findall(r"^COPY (.+)$", text, re.M):
            for src in line.split()[:-1]:
                assert (ROOT / src).exists(), f"{name}: COPY {src}"
    assert 'ENTRYPOINT ["bench-worker"]' in (ROOT / "deploy" / "Dockerfile.worker").read_text()
    assert 'ENTRYPOINT ["benchctl"]' in (ROOT / "deploy" / "Dockerfile.controller").read_text()


def test_every_worker_command_parses():
    services = compose()["services"]
    commands = [services["worker-cpu"]["command"], services["worker-gpu"]["command"]]
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "workers.yaml").read_text()):
        commands.append(doc["spec"]["template"]["spec"]["containers"][0]["args"])
    unit = (ROOT / "deploy" / "systemd" / "bench-worker@.service").read_text()
    exec_start = re.search(r"^ExecStart=\S+ (.+)$", unit, re.M).group(1).replace("%I", "cpu").split()
    commands.append(exec_start)
    for argv in commands:
        args = parse_args(argv)
        assert args.device in ("cpu", "cuda:0") and args.models_dir


def test_the_compose_worker_command_runs_as_a_plain_process(redis_server, workers, tiny_model, tmp_path, models_dir):
    argv = [a if a != "/models" else str(models_dir) for a in compose()["services"]["worker-cpu"]["command"]]
    q = argv[argv.index("--queue") + 1]
    workers(redis_server.url, device="cpu", queue=q, name="compose-cpu@test", client=redis_server.client())
    res = benchctl("submit", "--devices", q, "--batch-sizes", "1", "--seq-lens", "16", "--model", str(tiny_model),
                   "--warmup", "0", "--iterations", "2", "--min-time", "0", "--broker", redis_server.url, "--wait",
                   "--timeout", "60", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert load_json(tmp_path / "out" / "results.json")["cells"][0]["worker"] == "compose-cpu@test"
    ctl = compose()["services"]["controller"]["command"]
    listed = benchctl(*ctl, "--broker", redis_server.url)
    assert listed.returncode == 0 and "compose-cpu@test" in listed.stdout


def test_worker_unregisters_on_clean_shutdown(redis_server, workers):
    w = workers(redis_server.url, name="leaving@test", client=redis_server.client())
    assert "leaving@test" in benchctl("workers", "--broker", redis_server.url).stdout
    w.stop()
    assert "no live workers" in benchctl("workers", "--broker", redis_server.url).stdout


@pytest.mark.fast
def test_the_compose_controller_keeps_its_outputs_and_history_on_the_host():
    """Reports at ./results/RUN_ID (not results/results/RUN_ID), the history beside them (a
    `run --rm` container keeps nothing), written as the invoking user; workers keep their caches."""
    services = compose()["services"]
    ctl = services["controller"]
    workdir = re.findall(r"^WORKDIR (\S+)$", (ROOT / "deploy" / "Dockerfile.controller").read_text(), re.M)[-1]
    host, target = ctl["volumes"][0].split(":")[:2]
    assert host == "./results" and target == f"{workdir}/results"  # the default out dir results/RUN_ID lands there
    assert ctl["environment"]["BENCHCTL_HISTORY"].startswith(target + "/")
    assert ctl["environment"]["BENCHCTL_STORE_URL"]  # the broker settings merged in
    assert ctl["user"].startswith("${BENCHCTL_UID")
    for name in ("worker-cpu", "worker-gpu"):
        assert any(v.startswith("worker-cache:/home/bench/.cache") for v in services[name]["volumes"])
    assert "worker-cache" in compose()["volumes"]

"""The GPU check: every CUDA and NVML path of benchctl on a real GPU, asserted.

    OUT=/tmp/out python3 scripts/gpu_check.py        (scripts/gpu_check.sh runs this)

Runs from the source tree with no installs and no network: torch (a CUDA build),
transformers, pandas, typer, psutil and nvidia-ml-py are enough (no celery, no redis: the
worker's fork is exercised with os.fork, as Celery's prefork pool does it). Each step runs in
a process of its own under a timeout taken from one overall budget (5.5 minutes), and every
result is written as soon as it exists, so a step that hangs or crashes costs only itself.

Writes at most five files to $OUT: summary.txt (a PASS/FAIL line per check with the number it
stands on), environment.txt, steps.jsonl (every step's raw figures), check.log (every step's
output) and report.md (the CPU-vs-GPU report of the default model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 330  # the whole check, under the 6 minutes a lent GPU gives a run
RUN = "20260101-000000-c0ffee"


# -- steps: each runs in its own process (``--step NAME``) and prints JSON lines ------------------

def _emit(**fields) -> None:
    print("RESULT " + json.dumps(fields, default=str), flush=True)


def _cell(pool: str, batch: int, variant: str = "eager", seq: int = 128, dtype: str = "fp32", min_time: float = 1.0,
          iterations: int = 20):
    from bench_protocol.spec import CellSpec, MeasureRules

    rules = MeasureRules(warmup=3, min_iterations=iterations, min_time=min_time, max_time=max(30.0, min_time * 3),
                         time_limit=120)
    return CellSpec(run_id=RUN, pool=pool, batch_size=batch, seq_len=seq, dtype=dtype, variant=variant, rules=rules)


def _summary(rec: dict) -> dict:
    m = rec.get("metrics") or {}
    return {"status": rec.get("status"), "error": rec.get("error"), "latency_ms_mean": (m.get("latency_ms") or {}).get("mean"),
            "gpu_avg_power_w": m.get("gpu_avg_power_w"), "gpu_memory_baseline_mb": m.get("gpu_memory_baseline_mb"),
            "gpu_memory_allocated_mb_max": m.get("gpu_memory_allocated_mb_max"),
            "pct_peak_spec": m.get("pct_peak_spec"), "tflops_achieved": m.get("tflops_achieved"),
            "transfer_h2d_ms": m.get("transfer_h2d_ms"), "transfer_d2h_ms": m.get("transfer_d2h_ms"),
            "trackers": rec.get("trackers"), "peaks": rec.get("peaks"), "attention": rec.get("attention")}


def step_uuid() -> None:
    """NVML's UUID of the device torch calls cuda:0, both ways, and the fingerprint's."""
    import torch

    from bench_workers.device import cuda_device
    from bench_workers.device.fingerprint import host_fingerprint

    device = torch.device("cuda", 0)
    pynvml, handle, reason = cuda_device.nvml_handle(torch, device)
    nvml_uuid = pynvml.nvmlDeviceGetUUID(handle) if handle is not None else None
    fp = host_fingerprint("cuda:0")
    _emit(torch_uuid=cuda_device.torch_uuid(torch, device), nvml_uuid=nvml_uuid, reason=reason,
          fingerprint_uuid=(fp.get("gpu") or {}).get("uuid"), visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
          count=torch.cuda.device_count(), name=torch.cuda.get_device_name(0))


def step_gpu() -> None:
    """The GPU cells: events vs wall clock, energy, variants, out of memory, % of peak."""
    import torch

    from bench_workers.cell.measure import ModelCache, measure_cell
    from bench_workers.device import cuda_device
    from bench_workers.device.peaks import PEAKS

    pynvml, handle, _ = cuda_device.nvml_handle(torch, torch.device("cuda", 0))
    idle = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0 if handle is not None else None
    limit = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0 if handle is not None else None
    _emit(check="idle", idle_w=idle, limit_w=limit)
    cache = ModelCache()

    # b32 for 3 s: the event-timed latency, the energy window, % of peak, the transfers.
    rec = measure_cell(_cell("cuda", 32, min_time=3.0), "cuda:0", cache=cache)
    _emit(check="b32", **_summary(rec))
    device = torch.device("cuda", 0)
    _guarded("wall", lambda: _wall(torch, cache, device))
    _guarded("bf16", lambda: _bf16(cache))
    _guarded("variants", lambda: _variants(torch, cache, device))
    _guarded("oom", lambda: _oom(cache))
    _guarded("server", lambda: _server(cache))
    _guarded("generate", lambda: _generate(cache))
    _guarded("generate-server", lambda: _generate_server(cache))
    _guarded("precision", lambda: _precision(cache))
    _guarded("ort", lambda: _ort(cache))
    with cuda_device.scope(torch, device):  # the bf16 ceiling against the spec sheet
        bf16 = PEAKS.get(torch, device, "bf16")
    _emit(check="bf16-peak", gemm_tflops=bf16["gemm_tflops"], tf32=bf16.get("tf32"))


def _wall(torch, cache, device) -> None:
    """The same b32 forward timed by a synchronised wall clock. In a function of its own: a
    reference to the model held in the step's frame would outlive the cache's and show as a leak."""
    from bench_workers.cell import inputs

    model = cache.loaded.model if cache.loaded is not None else None
    if model is None:
        return
    feeds = inputs.synthetic(torch, 32, 128, model.config.vocab_size, device)
    walls = []
    with torch.inference_mode():
        for _ in range(5):
            model(**feeds)
        for _ in range(20):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(**feeds)
            torch.cuda.synchronize(device)
            walls.append((time.perf_counter() - t0) * 1e3)
    _emit(check="wall", wall_ms_mean=sum(walls) / len(walls))


def _bf16(cache) -> None:
    """b32 in bf16: faster than fp32 and its outputs within the accuracy check of fp32 eager."""
    from bench_workers.cell.measure import measure_cell

    rec = measure_cell(_cell("cuda", 32, dtype="bf16", min_time=1.0), "cuda:0", cache=cache)
    acc = rec.get("accuracy") or {}
    _emit(check="bf16", **_summary(rec), top1=acc.get("top1_agreement"), max_abs_diff=acc.get("max_abs_diff"))


def _generate(cache) -> None:
    """A generate cell (gpt2 from its bundled config, random weights): TTFT and per-token decode
    timed on the GPU, and their sum against the whole call."""
    import dataclasses

    from bench_protocol.spec import ModelRef
    from bench_workers.cell.measure import measure_cell

    cell = dataclasses.replace(_cell("cuda", 4, seq=32, min_time=1.0, iterations=5), task="generate", new_tokens=16,
                               model=ModelRef(model="gpt2"))
    rec = measure_cell(cell, "cuda:0", cache=cache)
    m = rec.get("metrics") or {}
    _emit(check="generate", status=rec.get("status"), error=rec.get("error"),
          call_ms=(m.get("latency_ms") or {}).get("mean"), ttft_ms=(m.get("ttft_ms") or {}).get("mean"),
          decode_ms=(m.get("decode_ms_per_token") or {}).get("mean"), steps=m.get("decode_steps_per_call"),
          tokens_per_s=m.get("decode_tokens_per_s_batch"), gpu_avg_power_w=m.get("gpu_avg_power_w"))


def _precision(cache) -> None:
    """--precision on a GPU: the CUDA timer read between iterations (a synchronise outside the
    timed calls) until the mean's 95% interval is within 0.5%."""
    import dataclasses

    from bench_workers.cell.measure import measure_cell

    cell = _cell("cuda", 8, min_time=0.2, iterations=5)
    cell = dataclasses.replace(cell, rules=dataclasses.replace(cell.rules, precision=0.5, max_time=20.0))
    rec = measure_cell(cell, "cuda:0", cache=cache)
    lat = (rec.get("metrics") or {}).get("latency_ms") or {}
    _emit(check="precision", status=rec.get("status"), error=rec.get("error"), n=lat.get("n"), mean=lat.get("mean"),
          ci95_pct=lat.get("ci95_pct"), cv=lat.get("cv"))


def _ort(cache) -> None:
    """ONNX Runtime under a GPU pool: measured on the CUDA provider, or refused with a reason;
    never a CPU number filed as the GPU's."""
    from bench_workers.cell.measure import measure_cell

    rec = measure_cell(_cell("cuda", 8, variant="ort", min_time=0.5), "cuda:0", cache=cache)
    _emit(check="ort", status=rec.get("status"), error=rec.get("error"),
          providers=(rec.get("runtime") or {}).get("providers"), runtime=rec.get("runtime"),
          latency_ms_mean=((rec.get("metrics") or {}).get("latency_ms") or {}).get("mean"))


def _guarded(name: str, fn) -> None:
    """One part of a step: a failure is reported and the step goes on with the next part."""
    try:
        fn()
    except Exception as exc:
        _emit(check=name, exception=f"{type(exc).__name__}: {exc}")


def _variants(torch, cache, device) -> None:
    """Variants at batch 1: their outputs against the fp32 eager reference (the record's accuracy
    check), and a captured graph faster than eager."""
    from bench_workers.cell.measure import measure_cell

    means, diffs = {}, {}
    for variant in ("eager", "cudagraph", "compile"):
        r = measure_cell(_cell("cuda", 1, variant), "cuda:0", cache=cache)
        means[variant] = _summary(r)["latency_ms_mean"]
        diffs[variant] = (r.get("accuracy") or {}).get("max_abs_diff")
        _emit(check=f"b1-{variant}", **_summary(r))
    _emit(check="outputs", max_abs_diff=diffs, latency_means=means)


def _server(cache) -> None:
    """A server cell (LoadGen's Server scenario, the batcher on its own thread) on the GPU."""
    import dataclasses

    from bench_workers.cell.measure import measure_cell

    cell = _cell("cuda", 8, min_time=0.3)
    cell = dataclasses.replace(cell, scenario="server",
                               rules=dataclasses.replace(cell.rules, rate=200.0, serve_time=2.0))
    rec = measure_cell(cell, "cuda:0", cache=cache)
    rep = (rec.get("serving") or {}).get("reported") or {}
    _emit(check="server", status=rec.get("status"), error=rec.get("error"), requests=rep.get("requests"),
          dropped=rep.get("dropped"), p99_ms=rep.get("p99_ms"), loadgen_p99_ms=rep.get("loadgen_p99_ms"),
          valid=rep.get("valid"), gpu_avg_power_w=(rec.get("metrics") or {}).get("gpu_avg_power_w"))


def _generate_server(cache) -> None:
    """Generate requests under load on the GPU: the first token synchronised and reported to
    LoadGen as it exists, TTFT and TPOT judged at p99 (gpt2 b8, 16 new tokens, 40 req/s)."""
    import dataclasses

    from bench_protocol.spec import ModelRef
    from bench_workers.cell.measure import measure_cell

    cell = _cell("cuda", 8, seq=32, min_time=0.3)
    cell = dataclasses.replace(cell, task="generate", new_tokens=16, model=ModelRef(model="gpt2"), scenario="server",
                               rules=dataclasses.replace(cell.rules, rate=40.0, serve_time=2.0, slo_ttft_ms=1000.0,
                                                         slo_tpot_ms=100.0))
    rec = measure_cell(cell, "cuda:0", cache=cache)
    rep = (rec.get("serving") or {}).get("reported") or {}
    _emit(check="generate-server", status=rec.get("status"), error=rec.get("error"), requests=rep.get("requests"),
          dropped=rep.get("dropped"), ttft_p99_ms=rep.get("ttft_p99_ms"), loadgen_ttft_p99_ms=rep.get("loadgen_ttft_p99_ms"),
          tpot_p99_ms=rep.get("tpot_p99_ms"), loadgen_tpot_p99_ms=rep.get("loadgen_tpot_p99_ms"), goodput=rep.get("goodput"),
          valid=rep.get("valid"))


def _oom(cache) -> None:
    """Out of memory, then a good cell back at its baseline."""
    from bench_workers.cell.measure import measure_cell

    good = _summary(measure_cell(_cell("cuda", 8, min_time=0.3), "cuda:0", cache=cache))
    oom = measure_cell(_cell("cuda", 65536, seq=512, min_time=0.1, iterations=1), "cuda:0", cache=cache)
    after = _summary(measure_cell(_cell("cuda", 8, min_time=0.3), "cuda:0", cache=cache))
    _emit(check="oom", before=good["gpu_memory_baseline_mb"], after=after["gpu_memory_baseline_mb"],
          error=(oom.get("error") or {}), after_status=after["status"])


def step_fork() -> None:
    """The worker's path: a parent that never touches NVML or CUDA, a forked child that measures."""
    import torch

    from bench_workers.cell.measure import measure_cell
    from bench_workers.device import optional
    from bench_workers.device.fingerprint import fingerprint_in_subprocess

    fp = fingerprint_in_subprocess("cuda:0", "cuda:0", None, None)
    parent_clean = not optional.nvml_initialised_here() and not torch.cuda.is_initialized()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            rec = measure_cell(_cell("cuda", 8, min_time=2.0), "cuda:0")
            os.write(write, json.dumps(_summary(rec), default=str).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        child = json.loads(fh.read() or "{}")
    os.waitpid(pid, 0)
    _emit(parent_clean=parent_clean, fingerprint_uuid=(fp.get("gpu") or {}).get("uuid"), **child)


def step_cpu() -> None:
    from bench_workers.cell.measure import measure_cell

    _emit(**_summary(measure_cell(_cell("cpu", 32, min_time=1.0, iterations=3), "cpu")))


STEPS = {"uuid": step_uuid, "gpu": step_gpu, "fork": step_fork, "cpu": step_cpu}


# -- the orchestrator ---------------------------------------------------------------------------

class Check:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.deadline = time.monotonic() + BUDGET_S
        self.lines: list[str] = []
        self.log = open(out / "check.log", "a", encoding="utf-8")  # noqa: SIM115 (open for the whole check)

    def verdict(self, name: str, ok: bool | None, figure: str) -> None:
        word = "PASS" if ok else ("SKIP" if ok is None else "FAIL")
        self.lines.append(f"{word} {name}: {figure}")
        print(self.lines[-1], flush=True)
        (self.out / "summary.txt").write_text("\n".join(self.lines[:60]) + "\n")

    def step(self, name: str, budget: float, env: dict | None = None, args: list[str] | None = None) -> list[dict]:
        left = self.deadline - time.monotonic()
        timeout = min(budget, left - 5)
        if timeout < 10:
            self.log.write(f"== {name}: skipped, {left:.0f}s of the budget left\n")
            return []
        cmd = args or [sys.executable, str(Path(__file__).resolve()), "--step", name]
        t0 = time.monotonic()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                                  env={**os.environ, **(env or {})})
            stdout, stderr, rc = done.stdout, done.stderr, done.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            rc = f"timeout after {timeout:.0f}s"
        self.log.write(f"== {name} ({env or ''}) rc={rc} in {time.monotonic() - t0:.1f}s\n{stdout}\n{stderr}\n")
        self.log.flush()
        results = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
        with open(self.out / "steps.jsonl", "a", encoding="utf-8") as fh:
            for r in results:
                fh.write(json.dumps({"step": name, "env": env, **r}, default=str) + "\n")
            if rc != 0:
                fh.write(json.dumps({"step": name, "env": env, "rc": rc, "stderr_tail": stderr[-2000:]}) + "\n")
        return results


def _by(results: list[dict], check: str) -> dict:
    return next((r for r in results if r.get("check") == check), {})


def _judge_gpu(c: Check, gpu: list[dict], gpu_name: str | None) -> dict:
    b32, wall, idle = _by(gpu, "b32"), _by(gpu, "wall"), _by(gpu, "idle")
    ev, wl = b32.get("latency_ms_mean"), wall.get("wall_ms_mean")
    ratio = ev / wl if ev and wl else None
    c.verdict("CUDA-event mean / synchronised wall mean (b32)", ratio is not None and 0.9 <= ratio <= 1.1,
              f"{ratio:.3f} ({ev:.3f} ms / {wl:.3f} ms), bounds 0.9-1.1" if ratio else f"no figure ({b32.get('error')})")
    power, lo, hi = b32.get("gpu_avg_power_w"), idle.get("idle_w"), idle.get("limit_w")
    method = ((b32.get("trackers") or {}).get("gpu_power") or {}).get("power_method")
    c.verdict("ΔE/Δt above idle and under the power limit (b32, 3 s)",
              None not in (power, lo, hi) and lo < power < hi, f"{power} W, idle {lo} W, limit {hi} W, {method}")
    out = _by(gpu, "outputs")
    diff, means = out.get("max_abs_diff") or {}, out.get("latency_means") or {}
    c.verdict("compile and cudagraph outputs allclose to eager (b1, fp32)",
              bool(diff) and all(v is not None and v <= 1e-3 for v in diff.values()), f"max |diff| {diff}")
    e, g = means.get("eager"), means.get("cudagraph")
    c.verdict("cudagraph faster than eager at batch 1", bool(e and g and g < e), f"cudagraph {g} ms, eager {e} ms")
    oom = _by(gpu, "oom")
    before, after = oom.get("before"), oom.get("after")
    back = before is not None and after is not None and abs(after - before) < 64
    c.verdict("an OOM cell, then a good cell with memory back at its baseline",
              (oom.get("error") or {}).get("type") == "out_of_memory" and oom.get("after_status") == "ok" and back,
              f"error {(oom.get('error') or {}).get('type')}, baseline {before} -> {after} MiB")
    pct, peaks = b32.get("pct_peak_spec"), b32.get("peaks") or {}
    c.verdict("% of spec-sheet peak plausible (b32 fp32, 0.5-100%)", pct is not None and 0.5 <= pct <= 100,
              f"{pct}% of {peaks.get('spec_name')} {peaks.get('spec_tflops')} TFLOP/s; achieved {b32.get('tflops_achieved')}")
    bf16 = _by(gpu, "bf16-peak").get("gemm_tflops")
    from bench_workers.device.spec_sheet import spec_peak

    spec_bf16 = spec_peak(gpu_name, "bf16").get("spec_tflops")
    c.verdict("measured fp32 GEMM peak not above 1.1 x spec", bool(peaks.get("gemm_tflops")) and "peak_above_spec" not in peaks,
              f"{peaks.get('gemm_tflops')} TFLOP/s vs spec {peaks.get('spec_tflops')}, tf32 {peaks.get('tf32')}")
    c.verdict("measured bf16 GEMM peak 30-110% of spec", bool(bf16 and spec_bf16 and 0.3 * spec_bf16 <= bf16 <= 1.1 * spec_bf16),
              f"{bf16} TFLOP/s vs spec {spec_bf16}")
    srv = _by(gpu, "server")
    p99, lg = srv.get("p99_ms"), srv.get("loadgen_p99_ms")
    c.verdict("a server cell at 200 req/s (b8): all served, own p99 within 10% of LoadGen's",
              srv.get("status") == "ok" and not srv.get("dropped") and bool(p99 and lg and abs(p99 / lg - 1) <= 0.10),
              f"{srv.get('requests')} requests, p99 {p99} ms, LoadGen {lg} ms, {srv.get('error') or srv.get('exception') or ''}")
    bf = _by(gpu, "bf16")
    fp32_ms, bf_ms = b32.get("latency_ms_mean"), bf.get("latency_ms_mean")
    c.verdict("bf16 b32: faster than fp32, top-1 agreement with fp32 eager at least 90% (random weights)", bf.get("status") == "ok"
              and bool(fp32_ms and bf_ms and bf_ms < fp32_ms) and (bf.get("top1") or 0) >= 0.9,
              f"{bf_ms} ms vs fp32 {fp32_ms} ms, top-1 {bf.get('top1')}, max |diff| {bf.get('max_abs_diff')}, "
              f"{bf.get('error') or bf.get('exception') or ''}")
    gs = _by(gpu, "generate-server")
    ft, lft = gs.get("ttft_p99_ms"), gs.get("loadgen_ttft_p99_ms")
    c.verdict("generate requests at 40 req/s (gpt2 b8, 16 tokens): all served, own TTFT p99 within 10% (or 2 ms) of LoadGen's",
              gs.get("status") == "ok" and not gs.get("dropped") and bool(ft and lft and abs(ft - lft) <= max(2.0, 0.1 * lft)),
              f"{gs.get('requests')} requests, TTFT p99 {ft} ms (LoadGen {lft}), TPOT p99 {gs.get('tpot_p99_ms')} ms "
              f"(LoadGen {gs.get('loadgen_tpot_p99_ms')}), goodput {gs.get('goodput')} req/s, valid {gs.get('valid')}, "
              f"{gs.get('error') or gs.get('exception') or ''}")
    gen = _by(gpu, "generate")
    call, ttft, dec, steps = gen.get("call_ms"), gen.get("ttft_ms"), gen.get("decode_ms"), gen.get("steps") or []
    parts = ttft + dec * steps[0] if ttft and dec and len(steps) == 1 else None
    c.verdict("generate (gpt2 b4, 16 new tokens): TTFT + 15 decode steps within 15% of the call",
              gen.get("status") == "ok" and bool(parts and call and abs(parts / call - 1) <= 0.15),
              f"call {call} ms, TTFT {ttft} ms, decode {dec} ms/token x {steps}, {gen.get('tokens_per_s')} tokens/s, "
              f"{gen.get('error') or gen.get('exception') or ''}")
    pr = _by(gpu, "precision")
    c.verdict("--precision 0.5 (b8): timed until the mean's 95% interval is within ±0.5%",
              pr.get("status") == "ok" and pr.get("ci95_pct") is not None and pr["ci95_pct"] <= 0.5,
              f"{pr.get('n')} iterations, mean {pr.get('mean')} ms, ±{pr.get('ci95_pct')}%, cv {pr.get('cv')}, "
              f"{pr.get('error') or pr.get('exception') or ''}")
    ort = _by(gpu, "ort")
    err = ort.get("error") or {}
    on_gpu = ort.get("status") == "ok" and "CUDAExecutionProvider" in str(ort.get("runtime"))
    refused = ort.get("status") == "error" and err.get("type") in ("runtime_unavailable", "unsupported_dtype")
    c.verdict("ort under a GPU pool: on the CUDA provider, or refused with its reason (never CPU as GPU)",
              on_gpu or refused, f"status {ort.get('status')}, {ort.get('latency_ms_mean')} ms, "
              f"{err.get('type')}: {err.get('message') or ort.get('runtime') or ort.get('exception')}")
    att = b32.get("attention") or {}
    c.verdict("SDPA backend pinned and named", bool(att.get("sdpa_backend")), f"{att}")
    tr = (b32.get("transfer_h2d_ms"), b32.get("transfer_d2h_ms"))
    c.verdict("host-device transfers measured apart", all(v is not None and v > 0 for v in tr), f"h2d {tr[0]} ms, d2h {tr[1]} ms")
    return b32


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--step":
        STEPS[sys.argv[2]]()
        return 0
    out = Path(os.environ.get("OUT") or ROOT / "results" / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    c = Check(out)
    env_lines = [f"== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"]
    for cmd in (["nvidia-smi", "--query-gpu=name,uuid,driver_version,memory.total,power.limit", "--format=csv"],
                [sys.executable, "-c", "import torch, transformers; print('torch', torch.__version__, 'cuda', "
                 "torch.version.cuda, 'available', torch.cuda.is_available(), 'transformers', transformers.__version__)"]):
        try:
            env_lines.append(subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip())
        except (OSError, subprocess.SubprocessError) as exc:
            env_lines.append(f"{cmd[0]}: {exc}")
    (out / "environment.txt").write_text("\n".join(env_lines) + "\n")
    print("\n".join(env_lines), flush=True)

    uuid = c.step("uuid", 40)
    u = uuid[0] if uuid else {}
    c.verdict("NVML UUID = torch UUID (cuda:0)", bool(u.get("nvml_uuid")) and u["nvml_uuid"].endswith(str(u.get("torch_uuid"))),
              f"nvml {u.get('nvml_uuid')}, torch {u.get('torch_uuid')}, fingerprint {u.get('fingerprint_uuid')}")
    last = str(max(int(u.get("count") or 1) - 1, 0))
    pinned = c.step("uuid", 40, env={"CUDA_VISIBLE_DEVICES": last, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    p = pinned[0] if pinned else {}
    c.verdict(f"NVML UUID = torch UUID under CUDA_VISIBLE_DEVICES={last}",
              bool(p.get("nvml_uuid")) and p["nvml_uuid"].endswith(str(p.get("torch_uuid")))
              and p.get("fingerprint_uuid") == p.get("nvml_uuid"),
              f"nvml {p.get('nvml_uuid')}, torch {p.get('torch_uuid')}, fingerprint {p.get('fingerprint_uuid')}")

    gpu = c.step("gpu", 200)
    b32 = _judge_gpu(c, gpu, u.get("name"))

    fork = c.step("fork", 50)
    f = fork[0] if fork else {}
    power = ((f.get("trackers") or {}).get("gpu_power") or {})
    c.verdict("worker path (fork): parent clean, child measures with power", bool(f.get("parent_clean"))
              and f.get("status") == "ok" and bool(power.get("available")),
              f"parent clean {f.get('parent_clean')}, status {f.get('status')}, power {f.get('gpu_avg_power_w')} W "
              f"({power.get('reason') or power.get('power_method')})")

    cpu = c.step("cpu", 60)
    cpu_ms, gpu_ms = (cpu[0] if cpu else {}).get("latency_ms_mean"), b32.get("latency_ms_mean")
    speedup = cpu_ms / gpu_ms if cpu_ms and gpu_ms else None
    c.verdict("GPU/CPU speedup at batch 32 above 10x", bool(speedup and speedup > 10),
              f"{speedup:.1f}x ({cpu_ms:.1f} ms / {gpu_ms:.3f} ms)" if speedup else "no figure")

    report = Path(tempfile.mkdtemp(prefix="gpu-check-report-"))
    rc = c.step("report", 120, args=[sys.executable, "-m", "bench_ctl.cli", "run", "--devices", "cpu,cuda",
                                    "--batch-sizes", "1,32", "--iterations", "5", "--min-time", "0.5", "--repeats", "2",
                                    "--out", str(report)])
    md = report / "report.md"
    if md.exists():
        text = md.read_text()
        (out / "report.md").write_text(text)
        name = u.get("name")
        c.verdict("the seed report from cpu,cuda names the GPU", bool(name) and name in text and "No GPU information" not in text,
                  f"{name!r} {'in' if name and name in text else 'not in'} its {len(text)} characters")
        row = next((line for line in text.splitlines() if line.startswith("|") and line.split("|")[1].strip() == "32"
                    and "x (" in line), "")
        c.verdict("--repeats 2: the b32 GPU speedup with its 95% interval over repeats, judged faster",
                  "over each cell's repeats" in text and "faster" in row, row.strip() or "no b32 row with an interval")
    else:
        c.verdict("the seed report from cpu,cuda", False, f"no report.md ({rc})")
    failed = sum(line.startswith("FAIL") for line in c.lines)
    c.verdict("all checks", failed == 0, f"{failed} failed of {len(c.lines)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

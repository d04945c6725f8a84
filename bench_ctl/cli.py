"""The ``benchctl`` command line: each command parses, calls a library function, prints.

Errors from the library are typed (bench_protocol.errors) and become one line and an exit code
here, never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench_protocol.errors import BenchError, SpecError
from bench_protocol.spec import MeasureRules, ModelRef, RunSpec, check_torch_device, parse_int_list, parse_name_list

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark model inference across devices and hosts; report the speedups.")

Devices = Annotated[str, typer.Option("--devices", "-d", help="comma-separated devices or pools, baseline first: cpu,cuda")]
BatchSizes = Annotated[str, typer.Option("--batch-sizes", "-b", help="comma-separated batch sizes")]
SeqLens = Annotated[str, typer.Option("--seq-lens", help="comma-separated sequence lengths")]
Dtypes = Annotated[str, typer.Option("--dtypes", help="comma-separated dtypes: fp32, fp16, bf16")]
Model = Annotated[str, typer.Option("--model", help="Hugging Face id or local model directory")]
Weights = Annotated[str, typer.Option("--weights", help="auto | pretrained | random")]
Input = Annotated[str, typer.Option("--input", help="synthetic token ids or text through the tokenizer")]
Warmup = Annotated[int, typer.Option("--warmup", help="untimed warm-up calls")]
Iterations = Annotated[int, typer.Option("--iterations", help="minimum timed iterations")]
MinTime = Annotated[float, typer.Option("--min-time", help="minimum seconds of timed iterations")]
MaxTime = Annotated[float, typer.Option("--max-time", help="stop timing after this many seconds")]
TimeLimit = Annotated[float, typer.Option("--time-limit", help="a cell running longer fails (seconds)")]
MemLimit = Annotated[Optional[int], typer.Option("--memory-limit-mb", help="address-space cap for CPU cells (MiB)")]
Baseline = Annotated[Optional[str], typer.Option("--baseline", help="device the speedups are against (default: the first)")]
Broker = Annotated[Optional[str], typer.Option("--broker", help="redis:// or rediss:// URL (default $BENCHCTL_BROKER_URL or redis://localhost:6379/0)")]


def build_spec(devices, batch_sizes, seq_lens, dtypes, model, weights, input_, warmup, iterations, min_time, max_time,
               time_limit, memory_limit_mb, baseline) -> RunSpec:
    from bench_protocol.model_config import check_seq_lens

    spec = RunSpec(
        pools=parse_name_list(devices, "device"),
        batch_sizes=parse_int_list(batch_sizes, "batch size"),
        seq_lens=parse_int_list(seq_lens, "sequence length"),
        dtypes=parse_name_list(dtypes, "dtype"),
        model=ModelRef(model=model, weights=weights, input=input_),
        rules=MeasureRules(warmup=warmup, min_iterations=iterations, min_time=min_time, max_time=max_time,
                           time_limit=time_limit, memory_limit_mb=memory_limit_mb),
        baseline=baseline,
    )
    check_seq_lens(model, spec.seq_lens)
    return spec


def _echo_err(msg: str) -> None:
    typer.echo(f"benchctl: error: {msg}", err=True)


@app.command()
def run(
    devices: Devices = "cpu",
    batch_sizes: BatchSizes = "1,8",
    seq_lens: SeqLens = "128",
    dtypes: Dtypes = "fp32",
    model: Model = "distilbert-base-uncased-finetuned-sst-2-english",
    weights: Weights = "auto",
    input_: Input = "synthetic",
    warmup: Warmup = 3,
    iterations: Iterations = 10,
    min_time: MinTime = 2.0,
    max_time: MaxTime = 120.0,
    time_limit: TimeLimit = 900.0,
    memory_limit_mb: MemLimit = None,
    baseline: Baseline = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output directory (default results/RUN_ID)")] = None,
):
    """Measure every cell here, in this process, with no broker; write results and the report."""
    from bench_ctl.embedded_run import run_here

    spec = build_spec(devices, batch_sizes, seq_lens, dtypes, model, weights, input_, warmup, iterations, min_time,
                      max_time, time_limit, memory_limit_mb, baseline)
    for device in spec.pools:
        check_torch_device(device)
    written = run_here(spec, out or Path("results") / spec.run_id)
    typer.echo(f"report: {written['report.md']}")
    typer.echo(f"html:   {written['report.html']}")
    typer.echo(f"data:   {written['results.json']}")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="a results.json written by run or collect")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("report"),
):
    """Re-render every report file from saved records."""
    from bench_ctl.outdir import check_out_dir
    from bench_ctl.render import render_all
    from bench_protocol.records import load_results

    doc = load_results(results)
    check_out_dir(out)
    written = render_all(doc, out)
    typer.echo(f"report: {written['report.md']}")


@app.command()
def compare(
    old: Annotated[Path, typer.Argument(help="baseline results.json")],
    new: Annotated[Path, typer.Argument(help="candidate results.json")],
    fail_on_regression: Annotated[Optional[float], typer.Option("--fail-on-regression", help="exit 1 if a cell is slower by more than PCT percent, beyond noise")] = None,
):
    """Per-cell change in latency and throughput between two runs."""
    from bench_ctl.compare import compare as do_compare
    from bench_ctl.compare import regressions
    from bench_protocol.records import load_results

    if fail_on_regression is not None and fail_on_regression < 0:
        raise SpecError("--fail-on-regression must be a non-negative percentage")
    table = do_compare(load_results(old), load_results(new))
    if table.empty:
        raise SpecError("the two runs share no measured cell")
    typer.echo(table.to_markdown(index=False, floatfmt=".2f"))
    if fail_on_regression is not None:
        bad = regressions(table, fail_on_regression)
        if len(bad):
            _echo_err(f"{len(bad)} cell(s) regressed by more than {fail_on_regression:g}% beyond noise")
            raise typer.Exit(1)


def _register_distributed() -> None:
    from bench_ctl import commands_distributed  # noqa: F401  (adds submit, status, collect, ...)


def main() -> None:
    _register_distributed()
    try:
        app(standalone_mode=False)
    except BenchError as exc:
        from bench_protocol.broker import redact

        _echo_err(redact(str(exc)))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _echo_err("interrupted; every finished record is kept (collect the run again to pick it up)")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _echo_err("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            _echo_err(exc.format_message())
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()

"""The Typer app and the options that run and submit share (one spec, one set of flags)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bench_protocol.spec import MeasureRules, ModelRef, RunSpec, parse_int_list, parse_name_list

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


def echo_err(msg: str) -> None:
    typer.echo(f"benchctl: error: {msg}", err=True)

"""The Typer app and the options that run and submit share (one spec, one set of flags)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Annotated, Optional

import typer

from bench_protocol.spec import (
    DEFAULT_GENERATIVE_MODEL,
    DEFAULT_MODEL,
    DTYPES,
    SCENARIOS,
    VARIANTS,
    MeasureRules,
    ModelRef,
    RunSpec,
    parse_int_list,
    parse_name_list,
    parse_prices,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark model inference across devices and hosts; report the speedups.")

# The spec flags: (parameter, type, default, flag names, help). One list drives run and submit.
SPEC_FLAGS = [
    ("devices", str, "cpu", ("--devices", "-d"), "comma-separated devices or pools, baseline first: cpu,cuda"),
    ("batch_sizes", str, "1,8", ("--batch-sizes", "-b"), "comma-separated batch sizes"),
    ("seq_lens", str, "128", ("--seq-lens",), "comma-separated sequence lengths"),
    ("dtypes", str, "fp32", ("--dtypes",), f"comma-separated dtypes: {', '.join(DTYPES)}"),
    ("variants", str, "eager", ("--variants",), f"comma-separated runtimes to run the model on: {', '.join(VARIANTS)}"),
    ("task", str, "auto", ("--task",), "auto | classify | generate (auto: a causal LM generates)"),
    ("new_tokens", int, 32, ("--new-tokens",), "tokens a generate cell makes per sequence after its prompt"),
    ("model", Optional[str], None, ("--model",),
     f"Hugging Face id or local model directory (default {DEFAULT_MODEL}; {DEFAULT_GENERATIVE_MODEL} for --task generate)"),
    ("weights", str, "auto", ("--weights",), "auto | pretrained | random"),
    ("input_", str, "synthetic", ("--input",), "synthetic token ids or text through the tokenizer"),
    ("baseline", Optional[str], None, ("--baseline",), "device the speedups are against (default: the first)"),
    ("latency_budget_ms", Optional[float], None, ("--latency-budget-ms",),
     "the fastest way to run the model counts only cells whose p99 latency fits this budget"),
    ("scenarios", str, "batch", ("--scenario",),
     f"comma-separated: {', '.join(SCENARIOS)} (server: requests at --rate, batched as they come; offline: all at once)"),
    ("price", Optional[str], None, ("--price",),
     "USD per hour of one host per pool: cpu=0.40,cuda=3.20, or a TOML file with a [prices] table"),
    ("target_rate", Optional[float], None, ("--target-rate",),
     "requests/s to serve: the hosts each pool needs for it, in Cheapest way to serve it"),
    ("repeats", int, 1, ("--repeats",),
     "measure each cell this many times, spread through the sweep: means of repeats with 95% intervals"),
    ("hosts_per_pool", int, 1, ("--hosts-per-pool",),
     "spread each cell's repeats over at least this many hosts of its pool (one repeat per host by default)"),
]
_TYPES = {"int": int, "float": float, "int | None": Optional[int], "float | None": Optional[float]}
# The measurement rules' flags come from MeasureRules' fields: their defaults and help are its own.
RULE_FLAGS = [(f.name, _TYPES[f.type], f.default, (f.metadata.get("flag") or f"--{f.name.replace('_', '-')}",),
               f.metadata["help"]) for f in dataclasses.fields(MeasureRules)]
SPEC_FLAGS = SPEC_FLAGS + RULE_FLAGS


def spec_options(**defaults):
    """Give a command the spec flags (with its own defaults) and call it with ``spec=RunSpec``.

    Typer reads the parameters from ``__signature__``, so the flags are declared once.
    """
    def decorate(fn):
        hints = typing.get_type_hints(fn, include_extras=True)  # resolve the command's own string annotations
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn).parameters.values() if p.name != "spec"]
        flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, default),
                                   annotation=Annotated[kind, typer.Option(*names, help=text)])
                 for name, kind, default, names, text in SPEC_FLAGS]

        @functools.wraps(fn)
        def command(**kwargs):
            spec = build_spec(**{name: kwargs.pop(name) for name, *_ in SPEC_FLAGS})
            return fn(spec=spec, **kwargs)

        del command.__wrapped__  # Typer must see the new signature, not the wrapped one
        command.__annotations__ = {}
        command.__signature__ = inspect.Signature(flags + own)
        return command
    return decorate


Broker = Annotated[Optional[str], typer.Option("--broker", help="redis://, rediss://, amqp:// or amqps:// URL (default $BENCHCTL_BROKER_URL or redis://localhost:6379/0)")]
Store = Annotated[Optional[str], typer.Option("--store", help="redis:// or rediss:// URL of benchctl's records (default $BENCHCTL_STORE_URL, else the broker when it is Redis)")]


DEFAULT_KEEP_DAYS = 28
KeepDays = Annotated[float, typer.Option("--keep-days", help="days Redis keeps a collected run's keys (0: for ever)")]
NoHistory = Annotated[bool, typer.Option("--no-history", help="do not add this run to the results history ($BENCHCTL_HISTORY)")]


def build_spec(devices, batch_sizes, seq_lens, dtypes, variants, task, new_tokens, model, weights, input_, baseline,
               latency_budget_ms, scenarios, price, target_rate, repeats, hosts_per_pool, **rules) -> RunSpec:
    """The flags' strings -> a validated RunSpec (SpecError with one line otherwise)."""
    from bench_protocol.model_config import check_seq_lens, resolve_task

    if model is None:
        model = DEFAULT_GENERATIVE_MODEL if task == "generate" else DEFAULT_MODEL
    task = resolve_task(model, task)
    spec = RunSpec(
        pools=parse_name_list(devices, "device"),
        batch_sizes=parse_int_list(batch_sizes, "batch size"),
        seq_lens=parse_int_list(seq_lens, "sequence length"),
        dtypes=parse_name_list(dtypes, "dtype"),
        variants=parse_name_list(variants, "variant"),
        task=task,
        new_tokens=new_tokens,
        model=ModelRef(model=model, weights=weights, input=input_),
        rules=MeasureRules(**rules),
        baseline=baseline,
        latency_budget_ms=latency_budget_ms,
        scenarios=parse_name_list(scenarios, "scenario"),
        prices=parse_prices(price) if price is not None else None,
        target_rate=target_rate,
        repeats=repeats,
        hosts_per_pool=hosts_per_pool,
    )
    check_seq_lens(model, spec.seq_lens, spec.new_tokens if spec.task == "generate" else 0)
    return spec


def echo_err(msg: str) -> None:
    typer.echo(f"benchctl: error: {msg}", err=True)

"""Run and cell specs: one dataclass drives the CLI, the task payload and the saved record.

Validation lives in ``__post_init__`` and raises :class:`SpecError` with a one-line message.
A worker rebuilds the spec from the task's JSON, so a task can only ask for what a user could.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from dataclasses import dataclass, field

from .errors import SpecError
from .numeric import check_number

DEFAULT_MODEL = "distilbert-base-uncased-finetuned-sst-2-english"
DEFAULT_GENERATIVE_MODEL = "gpt2"
# int8: dynamic quantisation of the linear layers, on the runtimes that have it (eager on a CPU, ort).
DTYPES = ("fp32", "fp16", "bf16", "int8")
DEFAULT_AGREEMENT = 0.99  # bench_protocol/accuracy.py says why
WEIGHTS = ("auto", "pretrained", "random")
INPUTS = ("synthetic", "text")
# How the model is run (a runtime each, bench_workers/runtimes/): as is, compiled by torch.compile,
# replayed from a captured CUDA graph, through ONNX Runtime, through OpenVINO.
VARIANTS = ("eager", "compile", "cudagraph", "ort", "openvino")
# What is measured: one forward pass (classify), or a prefill then decode steps (generate).
TASKS = ("classify", "generate")
# How requests reach the model: a fixed batch timed call by call (batch); requests arriving at
# random at a rate, batched by the worker as they come (server, MLPerf's Server scenario); all
# requests at once (offline). In server and offline cells the batch size is the largest batch.
SCENARIOS = ("batch", "server", "offline")
MAX_NEW_TOKENS = 1 << 16

# A cell's coordinates within its run, declared once: (field, its prefix in the cell id).
# The cell id and its parser, records, the tidy frame, the tables and compare all read this.
CELL_AXES = (("pool", ""), ("batch_size", "b"), ("seq_len", "s"), ("dtype", ""), ("variant", ""), ("task", ""),
             ("new_tokens", "n"), ("scenario", ""), ("repeat", "r"))
AXES = tuple(name for name, _ in CELL_AXES)
# Replicates: the same cell measured again (--repeats). In ids and records like any axis, but
# never compared: the tables combine a cell's repeats into one mean with its interval.
REPLICATE_AXES = ("repeat",)
# What makes a cell the cell it is: every axis but the replicates (a cell's repeats share it).
CELL_KEY = tuple(a for a in AXES if a not in REPLICATE_AXES)
# The axes that split a run into comparison tables (pool and batch size are inside each table).
COMBO_AXES = tuple(a for a in AXES if a not in ("pool", "batch_size", *REPLICATE_AXES))
# What a record written before an axis existed measured.
AXIS_DEFAULTS = {"variant": "eager", "task": "classify", "new_tokens": 0, "scenario": "batch", "repeat": 0}
MAX_REPEATS = 100

# A pool is a queue name; the torch device kinds double as the default pool names.
_POOL_RE = re.compile(r"^[a-z][a-z0-9._-]{0,39}(:[0-9]{1,2})?$")
_TORCH_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:[0-9]{1,2})?)$")
_RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
# A Hugging Face repo id: optional namespace, no path tricks.
HF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")

MAX_BATCH = 65536
MAX_SEQ = 1 << 20
# Bounds of the measurement rules: no cell is timed for more than a week, nor repeated more
# than a billion times (the stop rule's time bounds it long before).
MAX_SECONDS = 7 * 86400.0
MAX_ITERATIONS = 10**9
MAX_MEMORY_MB = 1 << 30


def cell_id_of(run_id: str, coords: dict) -> str:
    """'RUN:cuda:1:b8:s128:fp32:eager' from a run id and the cell's coordinates."""
    return ":".join([run_id] + [f"{prefix}{coords[name]}" for name, prefix in CELL_AXES])


def base_cell_id(cell_id) -> str:
    """A cell id without its repeat (the last axis): what every repeat of the cell shares."""
    head, _, last = str(cell_id).rpartition(":")
    return head if last[:1] == "r" and last[1:].isdigit() else str(cell_id)


def parse_cell_id(cell_id: str) -> dict:
    """The inverse of :func:`cell_id_of`: {'run_id', 'pool', 'batch_size', ...}. A pool may hold a
    ':' (cuda:1), so the fixed axes are read from the right."""
    parts = str(cell_id).split(":")
    tail = len(CELL_AXES) - 1
    if len(parts) < tail + 2:
        raise SpecError(f"malformed cell id {cell_id!r}")
    out = {"run_id": check_run_id(parts[0]), "pool": ":".join(parts[1:-tail])}
    for (name, prefix), token in zip(CELL_AXES[1:], parts[-tail:]):
        if not token.startswith(prefix):
            raise SpecError(f"malformed cell id {cell_id!r}: {token!r} is not a {name}")
        value = token[len(prefix):]
        out[name] = int(value) if prefix else value
    return out


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise SpecError(f"malformed run id {run_id!r}: expected YYYYMMDD-HHMMSS-xxxxxx")
    return run_id


def parse_int_list(text: str, what: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; zero, negative, malformed or repeated values are refused."""
    values: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not re.fullmatch(r"[0-9]+", part):
            raise SpecError(f"malformed {what} {part!r} in {text!r}: expected positive integers like 1,8,32")
        value = int(part)
        if value <= 0:
            raise SpecError(f"{what} must be positive, got {value}")
        if value in values:
            raise SpecError(f"{what} {value} given twice in {text!r}")
        values.append(value)
    return values


def parse_name_list(text: str, what: str) -> list[str]:
    names = [p.strip() for p in str(text).split(",") if p.strip()]
    if not names:
        raise SpecError(f"no {what} given")
    if len(set(names)) != len(names):
        raise SpecError(f"a {what} is given twice in {text!r}")
    return names


def check_pool(pool: str) -> str:
    if not isinstance(pool, str) or not _POOL_RE.match(pool):
        raise SpecError(
            f"unknown device or pool {pool!r}: use cpu, cuda, cuda:N, mps or a pool name "
            "(lower-case letters, digits, '.', '_', '-')"
        )
    return pool


def check_torch_device(device: str) -> str:
    if not isinstance(device, str) or not _TORCH_DEVICE_RE.match(device):
        raise SpecError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps")
    return device


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise SpecError(f"unknown variant {variant!r}: use one of {', '.join(VARIANTS)}")
    return variant


def check_task(task: str, new_tokens: int) -> None:
    """A generate cell makes 1 to MAX_NEW_TOKENS tokens; a classify cell makes none."""
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}: use auto, {', '.join(TASKS)}")
    if not isinstance(new_tokens, int) or isinstance(new_tokens, bool):
        raise SpecError(f"new tokens must be an integer, got {new_tokens!r}")
    if task == "generate" and not 0 < new_tokens <= MAX_NEW_TOKENS:
        raise SpecError(f"new tokens must be a positive integer up to {MAX_NEW_TOKENS}, got {new_tokens}")
    if task == "classify" and new_tokens != 0:
        raise SpecError("a classify cell generates no tokens (new tokens must be 0)")


def check_repeats(repeats) -> None:
    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= MAX_REPEATS:
        raise SpecError(f"repeats must be an integer from 1 to {MAX_REPEATS}, got {repeats!r}")


def check_scenario(scenario: str, task: str, new_tokens: int = 0) -> None:
    if scenario not in SCENARIOS:
        raise SpecError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    # Its time per output token is measured after the first token: a request makes two at least.
    if scenario != "batch" and task == "generate" and isinstance(new_tokens, int) and new_tokens < 2:
        raise SpecError(f"a generate request of the {scenario} scenario makes at least 2 new tokens, got {new_tokens}")


def check_server_rules(rules, task: str = "classify") -> None:
    """A server cell's rate or bounds: a classify request is bounded by its latency (p99), a
    generate request by its time to first token and its time per output token (p99 each)."""
    token_bounds = rules.slo_ttft_ms is not None or rules.slo_tpot_ms is not None
    if task == "auto":  # the worker decides from the model: each kind's check then holds there
        if rules.rate is None and rules.slo_p99_ms is None and not token_bounds:
            raise SpecError("a server cell needs --rate (requests/s) or a bound (--slo-p99-ms; for generate cells "
                            "--slo-ttft-ms / --slo-tpot-ms): the rate is then searched")
        return
    if task == "generate":
        if rules.slo_p99_ms is not None:
            raise SpecError("a generate request is bounded by --slo-ttft-ms and --slo-tpot-ms, not --slo-p99-ms")
        if rules.rate is None and not token_bounds:
            raise SpecError("a generate server cell needs --rate (requests/s) or --slo-ttft-ms / --slo-tpot-ms "
                            "(the rate is then searched)")
        return
    if token_bounds:
        raise SpecError("--slo-ttft-ms and --slo-tpot-ms bound generate cells; a classify request is bounded by --slo-p99-ms")
    if rules.rate is None and rules.slo_p99_ms is None:
        raise SpecError("a server cell needs --rate (requests/s) or --slo-p99-ms (the rate is then searched)")


def pool_kind(pool: str) -> str:
    """The device kind a pool name implies: 'cuda:1' -> 'cuda', 'cpu-1t' -> 'cpu'."""
    head = re.split(r"[:._-]", pool, maxsplit=1)[0]
    for kind in ("cuda", "gpu", "mps", "cpu"):
        if head.startswith(kind):
            return "cuda" if kind == "gpu" else kind
    return head


def check_prices(prices, pools) -> dict[str, float] | None:
    """USD per hour per pool: each a pool of the run, each a positive number."""
    if prices is None:
        return None
    if not isinstance(prices, dict):
        raise SpecError("prices must map pools to USD per hour")
    out = {}
    for pool, price in prices.items():
        if pool not in pools:
            raise SpecError(f"a price is given for {pool!r}, which is not a device of this run ({', '.join(pools)})")
        out[pool] = float(check_number(price, f"price of {pool} (USD per hour)", 0, 1e9, lo_open=True))
    return out


def parse_prices(text: str) -> dict[str, float]:
    """'cpu=0.40,cuda=3.20' -> {'cpu': 0.4, 'cuda': 3.2}; or a TOML file's [prices] table."""
    from pathlib import Path

    text = str(text).strip()
    if "=" not in text:
        import tomllib

        try:
            table = tomllib.loads(Path(text).read_text()).get("prices")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read prices file {text}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"prices file {text} is not TOML: {exc}") from None
        if not isinstance(table, dict) or not table:
            raise SpecError(f"prices file {text} has no [prices] table (pool = USD per hour)")
        return {str(k): table[k] for k in table}
    out: dict[str, float] = {}
    for part in text.split(","):
        pool, sep, value = part.partition("=")
        pool = pool.strip()
        try:
            price = float(value)
        except ValueError:
            price = None
        if not sep or not pool or price is None:
            raise SpecError(f"malformed price {part.strip()!r}: expected POOL=USD_PER_HOUR, like cpu=0.40,cuda=3.20")
        if pool in out:
            raise SpecError(f"a price is given twice for {pool!r}")
        out[pool] = price
    return out


@dataclass
class MeasureRules:
    """How long and how often one cell is timed."""

    # Each field is a flag of `benchctl run` and `submit` (bench_ctl/options.py reads these
    # fields): "flag" names it where the field's own name is not the flag.
    warmup: int = field(default=3, metadata={"help": "untimed warm-up calls after the cold call"})
    min_iterations: int = field(default=10, metadata={"help": "timed iterations at least", "flag": "--iterations"})
    min_time: float = field(default=2.0, metadata={"help": "seconds of timed iterations at least"})
    max_time: float = field(default=120.0, metadata={"help": "stop timing after this many seconds"})
    time_limit: float = field(default=900.0, metadata={"help": "a cell that runs longer fails (seconds)"})
    memory_limit_mb: int | None = field(default=None, metadata={"help": "address-space cap honoured by a CPU cell (MiB)"})
    accuracy_tolerance: float = field(default=DEFAULT_AGREEMENT, metadata={
        "help": "share of top-1 labels (generate: greedy tokens) that must agree with the fp32 eager reference"})
    # Serving (server and offline cells; bench_workers/serving/).
    rate: float | None = field(default=None, metadata={
        "help": "requests/s offered to a server cell (with --slo-p99-ms: where the search starts)"})
    slo_p99_ms: float | None = field(default=None, metadata={
        "help": "p99 bound of a server cell: the highest rate that holds it is searched"})
    slo_ttft_ms: float | None = field(default=None, metadata={
        "help": "p99 bound of a generate request's time to first token (server cells; queueing included)"})
    slo_tpot_ms: float | None = field(default=None, metadata={
        "help": "p99 bound of a generate request's time per output token after its first (server cells)"})
    batch_window_ms: float = field(default=5.0, metadata={
        "help": "longest wait of a batch's first request before the batch runs (server and offline cells)"})
    serve_time: float = field(default=10.0, metadata={
        "help": "seconds of load per step of a server or offline cell (MLPerf's rules ask 600)"})
    precision: float = field(default=0.0, metadata={
        "help": "keep timing past --iterations and --min-time until the 95%% interval of the mean latency is "
                "within ± this %% of it (at most --max-time; 0: off); VALID then rests on that interval"})

    def __post_init__(self) -> None:
        for name in ("warmup", "min_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "warmup" else 1):
                raise SpecError(f"{name.replace('_', '-')} must be a {'non-negative' if name == 'warmup' else 'positive'} integer, got {value!r}")
        for name in ("min_time", "max_time", "time_limit"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise SpecError(f"{name.replace('_', '-')} must be a non-negative number of seconds, got {value!r}")
            check_number(value, name.replace("_", "-"), 0, MAX_SECONDS)
        if self.max_time < self.min_time:
            raise SpecError(f"max-time {self.max_time} is below min-time {self.min_time}")
        if self.time_limit <= 0:
            raise SpecError("time-limit must be positive")
        check_number(self.accuracy_tolerance, "accuracy-tolerance", 0, 1)
        check_number(self.precision, "precision (%)", 0, 100)
        if self.memory_limit_mb is not None and (not isinstance(self.memory_limit_mb, int) or self.memory_limit_mb <= 0):
            raise SpecError(f"memory-limit-mb must be a positive integer, got {self.memory_limit_mb!r}")
        if self.memory_limit_mb is not None:
            check_number(self.memory_limit_mb, "memory-limit-mb", 1, MAX_MEMORY_MB, integer=True)
        for name in ("warmup", "min_iterations"):
            check_number(getattr(self, name), name.replace("_", "-"), hi=MAX_ITERATIONS, integer=True)
        for name, top in (("rate", 1e9), ("slo_p99_ms", MAX_SECONDS * 1e3), ("slo_ttft_ms", MAX_SECONDS * 1e3),
                          ("slo_tpot_ms", MAX_SECONDS * 1e3)):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name.replace("_", "-"), 0, top, lo_open=True)
        check_number(self.batch_window_ms, "batch-window-ms", 0, MAX_SECONDS * 1e3)
        check_number(self.serve_time, "serve-time", 0, MAX_SECONDS, lo_open=True)


@dataclass
class ModelRef:
    """Which model and which weights. ``model`` is a Hugging Face id or a local directory."""

    model: str = DEFAULT_MODEL
    weights: str = "auto"
    input: str = "synthetic"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise SpecError("model must be a Hugging Face id or a local directory")
        if self.weights not in WEIGHTS:
            raise SpecError(f"unknown weights {self.weights!r}: use one of {', '.join(WEIGHTS)}")
        if self.input not in INPUTS:
            raise SpecError(f"unknown input {self.input!r}: use one of {', '.join(INPUTS)}")


@dataclass
class RunSpec:
    """One run: the grid of cells to measure and the rules to measure them by."""

    pools: list[str]
    batch_sizes: list[int]
    seq_lens: list[int] = field(default_factory=lambda: [128])
    dtypes: list[str] = field(default_factory=lambda: ["fp32"])
    model: ModelRef = field(default_factory=ModelRef)
    rules: MeasureRules = field(default_factory=MeasureRules)
    variants: list[str] = field(default_factory=lambda: ["eager"])
    task: str = "classify"
    new_tokens: int = 32  # generated per sequence by a generate cell (its prompt is seq_len tokens)
    run_id: str = field(default_factory=new_run_id)
    baseline: str | None = None
    latency_budget_ms: float | None = None
    scenarios: list[str] = field(default_factory=lambda: ["batch"])
    # USD per hour of one host of a pool, and the request rate to serve: the cost columns and
    # "Cheapest way to serve it" (bench_ctl/reporting/cost.py).
    prices: dict[str, float] | None = None
    target_rate: float | None = None
    # Each cell measured this many times, the repeats spread through the sweep (repeat 0 of
    # every cell, then repeat 1, ...) so that a slow drift does not hide in one of them.
    repeats: int = 1
    # Each cell's repeats spread over at least this many distinct hosts of its pool: a host takes
    # at most ceil(repeats / hosts_per_pool) of them (the claim refuses more; bench_protocol/lifecycle.py).
    hosts_per_pool: int = 1

    def __post_init__(self) -> None:
        if not self.pools:
            raise SpecError("no devices given")
        for pool in self.pools:
            check_pool(pool)
        if len(set(self.pools)) != len(self.pools):
            raise SpecError("a device is given twice")
        for what, values, top in (("batch size", self.batch_sizes, MAX_BATCH), ("sequence length", self.seq_lens, MAX_SEQ)):
            if not values:
                raise SpecError(f"no {what} given")
            for v in values:
                if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                    raise SpecError(f"{what} must be a positive integer, got {v!r}")
                if v > top:
                    raise SpecError(f"{what} {v} is above the limit {top}")
        for dtype in self.dtypes:
            if dtype not in DTYPES:
                raise SpecError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        if not self.dtypes:
            raise SpecError("no dtype given")
        if not self.variants:
            raise SpecError("no variant given")
        for variant in self.variants:
            check_variant(variant)
        check_task(self.task, 0 if self.task == "classify" else self.new_tokens)
        if not isinstance(self.new_tokens, int) or isinstance(self.new_tokens, bool) or not 0 < self.new_tokens <= MAX_NEW_TOKENS:
            raise SpecError(f"new tokens must be a positive integer up to {MAX_NEW_TOKENS}, got {self.new_tokens!r}")
        if self.latency_budget_ms is not None and (
                not isinstance(self.latency_budget_ms, (int, float)) or isinstance(self.latency_budget_ms, bool)
                or not self.latency_budget_ms > 0):
            raise SpecError(f"latency budget must be a positive number of milliseconds, got {self.latency_budget_ms!r}")
        if self.latency_budget_ms is not None:
            check_number(self.latency_budget_ms, "latency budget (ms)", 0, MAX_SECONDS * 1000, lo_open=True)
        if not self.scenarios or len(set(self.scenarios)) != len(self.scenarios):
            raise SpecError("give each scenario once")
        for scenario in self.scenarios:
            check_scenario(scenario, self.task, self.new_tokens)
        if "server" in self.scenarios:
            check_server_rules(self.rules, self.task)
        self.prices = check_prices(self.prices, self.pools)
        if self.target_rate is not None:
            check_number(self.target_rate, "target-rate", 0, 1e12, lo_open=True)
        check_repeats(self.repeats)
        check_number(self.hosts_per_pool, "hosts-per-pool", 1, MAX_REPEATS, integer=True)
        if self.hosts_per_pool > 1 and self.repeats == 1:
            self.repeats = self.hosts_per_pool  # one repeat per host
        if self.repeats < self.hosts_per_pool:
            raise SpecError(f"--hosts-per-pool {self.hosts_per_pool} needs at least as many repeats, got --repeats "
                            f"{self.repeats}")
        check_run_id(self.run_id)
        if self.baseline is None:
            self.baseline = self.pools[0]
        elif self.baseline not in self.pools:
            raise SpecError(f"baseline {self.baseline!r} is not one of the devices {','.join(self.pools)}")

    def cells(self) -> list[CellSpec]:
        return [
            CellSpec(run_id=self.run_id, pool=pool, batch_size=b, seq_len=s, dtype=d, variant=v, task=self.task,
                     new_tokens=self.new_tokens if self.task == "generate" else 0, scenario=sc, model=self.model,
                     rules=self.rules, repeat=r, host_cap=self.host_cap)
            for r in range(self.repeats) for pool in self.pools for sc in self.scenarios for d in self.dtypes for v in self.variants
            for s in self.seq_lens for b in self.batch_sizes
        ]

    @property
    def host_cap(self) -> int:
        """The most repeats of a cell one host may take (0: any)."""
        return -(-self.repeats // self.hosts_per_pool) if self.hosts_per_pool > 1 else 0

    def cell_of(self, cell_id: str) -> CellSpec | None:
        """The cell of this run with this id, as the run defines it (what :meth:`cells` makes),
        without making every cell; None when the run has no such cell."""
        try:
            coords = parse_cell_id(cell_id)
        except (SpecError, ValueError):
            return None
        grid = {"pool": self.pools, "batch_size": self.batch_sizes, "seq_len": self.seq_lens, "dtype": self.dtypes,
                "variant": self.variants, "task": [self.task],
                "new_tokens": [self.new_tokens if self.task == "generate" else 0], "scenario": self.scenarios,
                "repeat": range(self.repeats)}
        if coords.pop("run_id") != self.run_id or any(coords[axis] not in grid[axis] for axis in AXES):
            return None
        cell = CellSpec(run_id=self.run_id, model=self.model, rules=self.rules, host_cap=self.host_cap, **coords)
        return cell if cell.cell_id == cell_id else None  # 'b01' is not 'b1'

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        try:
            data = dict(data)
            data["model"] = ModelRef(**data.get("model", {}))
            data["rules"] = MeasureRules(**data.get("rules", {}))
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"malformed run spec: {exc}") from None


@dataclass
class CellSpec:
    """One measurement. Its id comes from its coordinates, so a redelivery overwrites its record."""

    run_id: str
    pool: str
    batch_size: int
    seq_len: int
    dtype: str
    variant: str = "eager"
    task: str = "classify"
    new_tokens: int = 0
    scenario: str = "batch"
    model: ModelRef = field(default_factory=ModelRef)
    rules: MeasureRules = field(default_factory=MeasureRules)
    repeat: int = 0  # which repeat of the cell this is (0 .. the run's repeats - 1)
    host_cap: int = 0  # the most repeats of this cell one host may take (--hosts-per-pool; 0: any)

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        check_pool(self.pool)
        if not isinstance(self.repeat, int) or isinstance(self.repeat, bool) or not 0 <= self.repeat < MAX_REPEATS:
            raise SpecError(f"repeat must be an integer from 0 to {MAX_REPEATS - 1}, got {self.repeat!r}")
        check_number(self.host_cap, "host cap", 0, MAX_REPEATS, integer=True)
        check_scenario(self.scenario, self.task, self.new_tokens)
        if self.scenario == "server":
            check_server_rules(self.rules, self.task)
        if self.dtype not in DTYPES:
            raise SpecError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        check_variant(self.variant)
        check_task(self.task, self.new_tokens)
        for what, v, top in (("batch size", self.batch_size, MAX_BATCH), ("sequence length", self.seq_len, MAX_SEQ)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v > top:
                raise SpecError(f"{what} must be a positive integer up to {top}, got {v!r}")

    @property
    def cell_id(self) -> str:
        return cell_id_of(self.run_id, self.coordinates())

    def coordinates(self) -> dict:
        return {name: getattr(self, name) for name in AXES}

    def differences(self, other: CellSpec) -> list[str]:
        """The fields in which this cell differs from ``other`` ('model.weights', 'rules.min_iterations')."""
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for name in mine:
            if isinstance(mine[name], dict):
                out += [f"{name}.{k}" for k in sorted(set(mine[name]) | set(theirs[name]))
                        if mine[name].get(k) != theirs[name].get(k)]
            elif mine[name] != theirs[name]:
                out.append(name)
        return out

    def to_dict(self) -> dict:
        # By hand: dataclasses.asdict deep-copies, a cost paid per cell of a 10,000-cell submit.
        out = {f.name: getattr(self, f.name) for f in _CELL_FIELDS}
        out["model"] = dict(self.model.__dict__)
        out["rules"] = dict(self.rules.__dict__)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CellSpec:
        if not isinstance(data, dict):
            raise SpecError("a cell spec must be a JSON object")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise SpecError(f"cell spec has unknown fields: {', '.join(sorted(unknown))}")
        try:
            data = dict(data)
            model = data.get("model", {})
            rules = data.get("rules", {})
            if not isinstance(model, dict) or not isinstance(rules, dict):
                raise SpecError("cell spec model and rules must be JSON objects")
            data["model"] = ModelRef(**model)
            data["rules"] = MeasureRules(**rules)
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"malformed cell spec: {exc}") from None


_CELL_FIELDS = dataclasses.fields(CellSpec)

"""Metrics declared once, and a history that grows with them: a database made by an older metric
set gains the new columns on append (SQLite and PostgreSQL); what cannot be migrated is one line;
a run of which no cell was measured exits non-zero and stays out; the Markdown shows no nan."""

import copy
import json
import subprocess

import pytest
from conftest import BIN, benchctl, load_json, worker_env
from seed_records import RUN_ID, seed_document
from test_history import postgres_history, sqlite_history  # noqa: F401 (fixtures)

import bench_ctl.history.database as history_module
import bench_ctl.reporting.frame as frame_module
from bench_ctl.history.database import History, HistoryError, NothingMeasured, finish_run
from bench_ctl.reporting.document import markdown_table, to_markdown
from bench_ctl.reporting.frame import CELL_COLUMNS, COLUMNS, cells_frame
from bench_ctl.reporting.report import build
from bench_ctl.reporting.tables import PHASES, SIDE_METRICS, detail_table, efficiency_table, generation_table
from bench_protocol.metrics import METRICS, PHASE_COLUMNS, PLAIN_METRICS, TABLES, Metric, shown_in

NEW_RUN = "20250102-000000-5eed01"
DROPPED = ("tokens_per_s", "gpu_energy_j_per_token")  # what the "older" benchctl did not know


def renamed(doc: dict, run_id: str) -> dict:
    """The same records under another run id (a second run in the history)."""
    doc = copy.deepcopy(doc)
    old = doc["run"]["run_id"]
    doc["run"]["run_id"] = run_id
    doc["run"]["created"] = 1_800_000_000.0
    for rec in doc["cells"]:
        rec["run_id"] = run_id
        rec["cell_id"] = rec["cell_id"].replace(old, run_id)
    return doc


def older_metric_set(monkeypatch, dropped=DROPPED) -> None:
    """This benchctl as it was before ``dropped`` were declared: its frame and its history schema."""
    metrics = tuple(m for m in METRICS if m.name not in dropped)
    columns = [*CELL_COLUMNS, *(m.name for m in metrics)]
    monkeypatch.setattr(frame_module, "METRICS", metrics)
    monkeypatch.setattr(frame_module, "COLUMNS", columns)
    monkeypatch.setattr(history_module, "COLUMNS", columns)


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.fast), "postgres"])
def history_url(request):
    return request.getfixturevalue(f"{request.param}_history")


# -- the declaration ------------------------------------------------------------------------


@pytest.mark.fast
def test_the_metric_declaration_drives_the_frame_the_tables_and_the_history(tmp_path):
    names = [m.name for m in METRICS]
    assert len(set(names)) == len(names) and COLUMNS == [*CELL_COLUMNS, *names]
    assert PLAIN_METRICS == [m.name for m in METRICS if not m.path] and set(PHASE_COLUMNS) < set(names)
    # The comparison tables: times before rates, direction from the declaration.
    assert PHASES["seed"] == [("latency_ms_mean", True), ("throughput_mean", False)]
    assert PHASES["decode"] == [("decode_ms_per_token_mean", True), ("decode_tokens_per_s", False)]
    assert SIDE_METRICS == ["cpu_memory_mb_max", "gpu_memory_mb_max", "gpu_avg_power_w"]
    # The per-cell tables show exactly the declared metrics under their labels; one only some cells
    # have (a GPU's, a runtime's) is left out where none has it.
    frame = cells_frame(seed_document())
    frame.loc[:, "task"] = "generate"
    for table, build_table in (("details", detail_table), ("efficiency", efficiency_table), ("generation", generation_table)):
        columns = set(build_table(frame).columns)
        for m in shown_in(table):
            assert (m.label in columns) is not (m.optional and frame[m.name].isna().all()), (table, m.name)
    # The history's cells table: a number column per metric.
    cells = History(str(tmp_path / "h.db")).metadata.tables["cells"]
    assert all(str(cells.c[m.name].type) == "FLOAT" for m in METRICS)
    with pytest.raises(ValueError, match="unknown table"):
        Metric("x", "s", True, "x", ("nowhere",))
    assert set(TABLES) >= {t for m in METRICS for t in m.tables}


@pytest.mark.fast
def test_a_metric_reads_its_place_in_a_record():
    m = {"latency_ms": {"median": 3.0}, "ttft_ms": {"p99": 9.0}, "tokens_per_s": 12.0}
    by = {x.name: x for x in METRICS}
    assert by["latency_ms_p50"].read(m) == 3.0 and by["ttft_ms_p99"].read(m) == 9.0
    assert by["tokens_per_s"].read(m) == 12.0 and by["decode_ms_per_token_mean"].read(m) is None


# -- the history migrates ---------------------------------------------------------------------


def test_a_history_of_an_older_metric_set_gains_the_new_columns_on_append(history_url, monkeypatch):
    with monkeypatch.context() as older:
        older_metric_set(older)
        History(history_url).append(seed_document())
        assert not set(DROPPED) & set(History(history_url).metadata.tables["cells"].columns.keys())
    # This benchctl reads the older database as it is (the new columns empty) ...
    before = History(history_url).cells()
    assert set(before["run_id"]) == {RUN_ID} and before["tokens_per_s"].isna().all()
    # ... and appending a run adds the missing columns instead of failing.
    assert History(history_url).append(renamed(seed_document(), NEW_RUN)) == 2
    cells = History(history_url).cells()
    assert sorted(set(cells["run_id"])) == [RUN_ID, NEW_RUN] and len(cells) == 4
    old, new = cells[cells["run_id"] == RUN_ID], cells[cells["run_id"] == NEW_RUN]
    assert old["tokens_per_s"].isna().all() and list(old["throughput_mean"]) == [17.83, 497.94]
    assert sorted(new["tokens_per_s"]) == pytest.approx([17.83 * 128, 497.94 * 128])
    assert {r for r in History(history_url).runs()["run_id"]} == {RUN_ID, NEW_RUN}
    # The older run appended again (its rows replaced) keeps working with the new columns.
    assert History(history_url).append(seed_document()) == 2 and len(History(history_url).cells()) == 4


@pytest.mark.fast
def test_rows_from_before_an_axis_existed_read_its_default(sqlite_history):  # noqa: F811
    """A history made before the scenario and repeat axes gained their columns on an append, its
    older rows empty there: they were batch cells measured once, and read and filter as such."""
    from sqlalchemy import create_engine, text

    History(sqlite_history).append(seed_document())
    engine = create_engine(history_module.history_url(sqlite_history))
    with engine.begin() as conn:  # what the migration left in the older rows
        conn.execute(text("UPDATE cells SET scenario = NULL, repeat = NULL, variant = NULL"))
    engine.dispose()
    cells = History(sqlite_history).cells()
    assert list(cells["scenario"]) == ["batch", "batch"] and list(cells["repeat"]) == [0, 0]
    assert list(cells["variant"]) == ["eager", "eager"]
    assert len(History(sqlite_history).cells(scenario="batch", repeat=0, variant="eager")) == 2
    assert History(sqlite_history).cells(scenario="server").empty


def _retype(url: str, column: str) -> None:
    """The column as text: a schema change no append can migrate."""
    from sqlalchemy import create_engine, text

    engine = create_engine(history_module.history_url(url))
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE cells DROP COLUMN {column}"))
        conn.execute(text(f"ALTER TABLE cells ADD COLUMN {column} TEXT"))
    engine.dispose()


def test_a_column_of_another_type_is_one_line_naming_what_to_do(history_url):
    History(history_url).append(seed_document())
    _retype(history_url, "tokens_per_s")
    with pytest.raises(HistoryError) as err:
        History(history_url).append(renamed(seed_document(), NEW_RUN))
    line = str(err.value)
    assert "\n" not in line and "cells.tokens_per_s" in line and "TEXT" in line
    assert "cannot be migrated in place" in line and "BENCHCTL_HISTORY" in line
    assert set(History(history_url).runs()["run_id"]) == {RUN_ID}  # nothing half-written


def test_a_history_that_cannot_take_the_run_says_so_on_the_last_line(sqlite_history, tmp_path):  # noqa: F811
    History(sqlite_history).append(renamed(seed_document(), NEW_RUN))
    _retype(sqlite_history, "tokens_per_s")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(seed_document()))
    res = subprocess.run([str(BIN / "benchctl"), "report", str(results), "--out", str(tmp_path / "out")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                         env=worker_env(BENCHCTL_HISTORY=sqlite_history))
    lines = res.stdout.strip().splitlines()
    assert res.returncode == 0, res.stdout  # the report is written; the history's failure is a warning
    assert lines[0].startswith("report: ") and (tmp_path / "out" / "report.md").is_file()
    assert lines[-1].startswith("benchctl: warning: run not added to the history: ") and "cells.tokens_per_s" in lines[-1]
    assert "Traceback" not in res.stdout


# -- a run of which no cell was measured ----------------------------------------------------------


def failed_document() -> dict:
    doc = seed_document()
    for rec in doc["cells"]:
        rec.update(status="error", error={"type": "model_not_found", "message": "does-not-exist: not in the cache"},
                   metrics={}, model=None, fingerprint_id=None)
    return doc


@pytest.mark.fast
def test_a_run_of_which_no_cell_was_measured_is_not_kept(sqlite_history, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("BENCHCTL_HISTORY", sqlite_history)
    with pytest.raises(NothingMeasured) as err:
        finish_run(failed_document())
    assert err.value.exit_code == 6 and "\n" not in str(err.value)
    assert "no cell was measured (2 failed; the first: model_not_found" in str(err.value)
    finish_run(failed_document(), strict=False)  # report: a warning, the run still kept out
    assert "benchctl: warning: run " in capsys.readouterr().err
    assert History(sqlite_history).runs().empty
    finish_run(seed_document())
    assert capsys.readouterr().out.startswith("history: ")
    assert list(History(sqlite_history).runs()["run_id"]) == [RUN_ID]
    md = to_markdown(build(failed_document(), cells_frame(failed_document())))
    assert "Hidden Size: unknown" in md and "None" not in md.split("## Model Information")[1].split("##")[0]


def test_run_of_an_unknown_model_exits_non_zero_and_stays_out_of_the_history(sqlite_history, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    res = benchctl("run", "--devices", "cpu", "--model", "does-not-exist", "--batch-sizes", "1", "--seq-lens", "8",
                   "--warmup", "0", "--iterations", "1", "--min-time", "0", "--out", str(out),
                   env=worker_env(BENCHCTL_HISTORY=sqlite_history, HF_HUB_OFFLINE="1"))
    assert res.returncode == 6, res.stdout + res.stderr
    assert "no cell was measured" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("benchctl: error: run ")
    assert f"report: {out}/report.md" in res.stdout and (out / "report.md").is_file()
    assert load_json(out / "results.json")["cells"][0]["status"] == "error"
    assert History(sqlite_history).runs().empty


# -- the Markdown -----------------------------------------------------------------------------------


@pytest.mark.fast
def test_markdown_tables_show_no_nan_and_whole_numbers_as_integers():
    doc = seed_document()
    gpu = copy.deepcopy(doc["cells"][1])  # a GPU cell at batch size 1 without power: a missing value
    gpu.update(batch_size=1, cell_id=gpu["cell_id"].replace(":b8:", ":b1:"))
    gpu["metrics"]["gpu_avg_power_w"] = None
    doc["cells"].append(gpu)
    for rec in doc["cells"]:  # generate cells: the prefill and decode tables
        rec.update(task="generate", new_tokens=4, cell_id=rec["cell_id"] + ":generate:n4")
        rec["metrics"]["ttft_ms"] = {"mean": 5.0, "median": 5.0, "p90": 6.0, "p99": 7.0, "std": 0.5}
        rec["metrics"]["decode_ms_per_token"] = {"mean": 2.0, "median": 2.0, "p90": 2.5, "p99": 3.0, "std": 0.1}
        rec["metrics"]["decode_tokens_per_s"] = 500.0
    md = to_markdown(build(doc, cells_frame(doc)))
    assert "nan" not in md.lower().replace("nanosecond", "")
    assert "- Batch size 8: CPU 1671.68 MiB, GPU 746.88 MiB" in md and "Batch size 8.0" not in md
    assert "- Batch size 8: GPU 216.24 W" in md
    seed_table, after = md.split("Prefill (time to first token)")
    prefill = after.split("#")[0]
    assert "|            1 |" in prefill and "|            8 |" in prefill and "8.00" not in prefill
    assert "|         8.00 |" in seed_table  # the seed's own table keeps its format
    assert "—" in md


def column(text: str, name: str) -> list[str]:
    """A Markdown table's column, as printed."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.strip().splitlines()]
    i = rows[0].index(name)
    return [r[i] for r in rows[2:]]


@pytest.mark.fast
def test_trend_and_compare_tables_print_integers_as_integers():
    from bench_ctl.reporting.compare import compare

    table = compare(seed_document(), seed_document())
    text = markdown_table(table)
    assert column(text, "batch_size") == ["8", "8"] and column(text, "seq_len") == ["128", "128"]
    assert column(text, "new_tokens") == ["0", "0"] and column(text, "latency_ms_mean_old") == ["449.57", "16.10"]
    # The history gives numbers back as floats (a trend's batch size and sequence length).
    history = table.assign(batch_size=8.0, seq_len=128.0, new_tokens=0.0, throughput_mean_old=float("nan"))
    text = markdown_table(history)
    assert column(text, "batch_size") == ["8", "8"] and column(text, "seq_len") == ["128", "128"]
    assert column(text, "new_tokens") == ["0", "0"] and column(text, "throughput_mean_old") == ["—", "—"]
    assert "nan" not in text


# -- the history under pressure -------------------------------------------------------------------


def test_a_history_path_under_a_regular_file_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the history's folder should be")
    history = str(blocker / "history.db")
    listed = benchctl("history", env=worker_env(BENCHCTL_HISTORY=history))
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert listed.stderr.strip().count("\n") == 0 and "cannot make its folder" in listed.stderr
    results = tmp_path / "results.json"
    results.write_text(json.dumps(seed_document()))
    res = benchctl("report", str(results), "--out", str(tmp_path / "out"), env=worker_env(BENCHCTL_HISTORY=history))
    assert res.returncode == 0 and (tmp_path / "out" / "report.md").is_file()  # the report stands; the history warns
    assert res.stderr.strip().splitlines()[-1].startswith("benchctl: warning: run not added to the history: ")
    assert "Traceback" not in res.stderr


def test_two_first_appends_to_a_fresh_postgres_history_keep_both_runs(postgres_history, tmp_path):  # noqa: F811
    """Both processes find no tables and make them at once: the schema lock lets one make them and
    the other find them made; neither run is lost."""
    procs = []
    for i, run_id in enumerate((NEW_RUN, "20250103-000000-5eed02")):
        results = tmp_path / f"results{i}.json"
        results.write_text(json.dumps(renamed(seed_document(), run_id)))
        procs.append(subprocess.Popen([str(BIN / "benchctl"), "report", str(results), "--out", str(tmp_path / f"out{i}")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=worker_env(BENCHCTL_HISTORY=postgres_history)))
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "warning" not in err, err
        assert out.strip().splitlines()[-1].startswith("history: ")
    assert set(History(postgres_history).runs()["run_id"]) == {NEW_RUN, "20250103-000000-5eed02"}

"""The command line a researcher can trust (issue 15): every bad invocation is one line naming
the thing and the cause, exit 2, no traceback; help that teaches; the subject-map workflow."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import duckdb
import pytest

from mlruns_assets.cli.main import cli
from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.processes import free_port, stop_process_group
from mlruns_assets_tests.support.webserver import clean_environ


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    root = tmp_path_factory.mktemp("cli")
    return write_demo_store(root / "store", runs=2, bootstraps=20, n_test=20, imputation_runs=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli_files")
    (root / "empty").mkdir()
    (root / "not_a_store").mkdir()
    (root / "not_a_store" / "notes.txt").write_text("hello")
    (root / "junk.duckdb").write_text("this is not a database\n")
    (root / "map.csv").write_text("code,label\nPLR0001,H001\n")
    (root / "passwd").write_text("root:x:0:0\n")
    with duckdb.connect(str(root / "good.duckdb")) as conn:
        conn.execute("CREATE TABLE t (a INT)")
    return {
        name: str(root / name)
        for name in ("empty", "not_a_store", "junk.duckdb", "map.csv", "passwd", "good.duckdb")
    } | {"root": str(root)}


# (arguments with {placeholders}, what the one line must say); every case exits 2.
BAD: list[tuple[str, str]] = [
    ("bogus", "No such command 'bogus'"),
    ("extract", "Missing option '--tracking-uri'"),
    ("extract --tracking-uri {uri}", "Missing option '--db'"),
    ("extract --tracking-uri /no/such/store --db {root}/r.duckdb", "/no/such/store"),
    ("extract --tracking-uri {empty} --db {root}/r.duckdb", "{empty}"),
    ("extract --tracking-uri {not_a_store} --db {root}/r.duckdb", "{not_a_store}"),
    ("extract --tracking-uri sqlite:///{root}/nope.db --db {root}/r.duckdb", "nope.db"),
    ("extract --tracking-uri sqlite://nope.db --db {root}/r.duckdb", "sqlite://nope.db: a SQLite"),
    ("extract --tracking-uri ftp://x --db {root}/r.duckdb", "ftp://x"),
    (
        "extract --tracking-uri {store} --db {root}/r.duckdb",
        "for the SQLite store in it use sqlite:///",
    ),
    ("extract --tracking-uri {uri} --db /proc/r.duckdb", "/proc"),
    ("extract --tracking-uri {uri} --db {passwd}/r.duckdb", "{passwd} is a file, not a folder"),
    ("extract --tracking-uri {uri} --db {root}", "is a folder"),
    ("extract --tracking-uri {uri} --db {junk.duckdb}", "not a DuckDB database"),
    ("extract --tracking-uri {uri} --db {sqlite}", "a SQLite file, not a DuckDB database"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --kind rf-classifier", "is not NAME=KIND"),
    (
        "extract --tracking-uri {uri} --db {root}/r.duckdb --kind Classification=clasification",
        "unknown kind 'clasification' for 'Classification' (choose generic, classification, "
        "imputation)",
    ),
    (
        "extract --tracking-uri {uri} --db {root}/r.duckdb --kind no-such-exp=generic",
        "--kind names unknown experiment(s) no-such-exp; the store has: Classification, Imputation",
    ),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --experiment Nope", "Nope"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --max-memory-gb -1", "--max-memory-gb"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --max-memory-gb lots", "--max-memory-gb"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --heartbeat-seconds -5", "--heartbeat"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --min-free-disk-gb x", "--min-free-disk"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --subject-map /no/map.csv", "/no/map.csv"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --subject-map {map.csv}", "header"),
    ("extract --tracking-uri {uri} --db {root}/r.duckdb --no-such-option", "--no-such-option"),
    ("status --tracking-uri {uri}", "Missing option '--db'"),
    ("check", "Missing option '--db'"),
    ("check --db /no/such.duckdb", "/no/such.duckdb does not exist"),
    ("check --db {junk.duckdb}", "not a DuckDB database"),
    ("check --db {sqlite}", "a SQLite file, not a DuckDB database"),
    ("check --db {good.duckdb} --registry /no/registry.yaml", "/no/registry.yaml"),
    ("check --db {good.duckdb} --original-pattern (", "--original-pattern"),
    ("report", "Missing option '--db'"),
    ("report --db /no/such.duckdb --out {root}/r.html", "/no/such.duckdb does not exist"),
    ("report --db {junk.duckdb} --out {root}/r.html", "not a DuckDB database"),
    ("report --db {sqlite} --out {root}/r.html", "a SQLite file, not a DuckDB database"),
    ("report --db {good.duckdb} --out {root}", "is a folder; give a file path"),
    ("report --db {good.duckdb} --out /no/such/r.html", "folder /no/such does not exist"),
    ("ui --tracking-uri {uri} --db {root}/r.duckdb --experiment Nope", "Nope"),
    ("ui --tracking-uri {uri} --db {root}/r.duckdb --port 99999", "--port"),
    (
        "ui --tracking-uri {uri} --db {root}/r.duckdb --stall-timeout-seconds 10",
        "must exceed --heartbeat-seconds",
    ),
    ("demo http://127.0.0.1:5077", "is a URI"),
    ("demo {store}", "already holds a tracking store"),
    ("demo {root}/d --runs 0", "--runs"),
    ("quickstart {root}/q --runs -3", "--runs"),
    ("subject-map --tracking-uri {uri}", "Missing option '--out'"),
    ("subject-map --tracking-uri {uri} --out {root}/m.csv --experiment Nope", "Nope"),
    ("subject-map --tracking-uri {uri} --out {map.csv}", "is not a subject map"),
    ("lint /no/such/path", "/no/such/path"),
]


@pytest.mark.parametrize(("args", "says"), BAD, ids=[a for a, _ in BAD])
def test_bad_invocation_is_one_line_and_exit_2(
    args: str, says: str, demo: DemoStore, files: dict[str, str]
) -> None:
    values = {**files, "uri": demo.tracking_uri, "store": str(demo.subject_map_path.parent)}
    values["sqlite"] = demo.tracking_uri.removeprefix("sqlite:///")
    fill: Callable[[str], str] = lambda s: re.sub(r"\{([\w.]+)\}", lambda m: values[m[1]], s)  # noqa: E731
    code, output = run_cli(*fill(args).split())
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert "Traceback" not in output, output
    assert len(lines) == 1, output
    assert lines[0].startswith("mlruns-assets: error: "), output
    assert fill(says) in lines[0], output
    assert not (Path(files["empty"]) / ".trash").exists()  # nothing written into a store


def test_help_teaches_every_command() -> None:
    code, top = run_cli("--help")
    assert code == 0 and "Exit codes" in top and "quickstart" in top
    code, version = run_cli("--version")
    assert code == 0 and re.search(r"mlruns-assets, version \d", version)
    for command in (
        "quickstart",
        "extract",
        "status",
        "ui",
        "check",
        "report",
        "subject-map",
        "demo",
        "tables",
        "lint",
    ):
        code, text = run_cli(command, "--help")
        assert code == 0, text
        assert "Example" in text and "Exit codes" in text, command
    # Every option says what it does, and its default unless it is a flag or required.
    for name in cli.list_commands(click.Context(cli)):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None and command.help, name
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            assert param.help, f"{name} {param.opts}"
            if not (param.is_flag or param.required or param.multiple):
                shows = param.show_default or "[default:" in param.help
                unset = param.default is None or repr(param.default) == "Sentinel.UNSET"
                assert shows or unset, f"{name} {param.opts}"


def test_subject_map_covers_every_experiment_and_never_renumbers(
    demo: DemoStore, tmp_path: Path
) -> None:
    out = tmp_path / "private" / "map.csv"
    code, said = run_cli("subject-map", "--tracking-uri", demo.tracking_uri, "--out", str(out))
    assert code == 0, said
    assert out.stat().st_mode & 0o777 == 0o600
    first = out.read_text()
    # The map covers classification and imputation subjects: extract with it succeeds.
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        demo.tracking_uri,
        "--db",
        str(tmp_path / "r.duckdb"),
        "--subject-map",
        str(out),
    )
    assert code == 0, output
    assert run_cli("check", "--db", str(tmp_path / "r.duckdb"), "--subject-map", str(out))[0] == 0
    # Rerun: nothing new, the file is untouched.
    code, said = run_cli("subject-map", "--tracking-uri", demo.tracking_uri, "--out", str(out))
    assert code == 0 and "no new subjects" in said and out.read_text() == first
    # A map with one subject less gets it back at the end, every other row unchanged.
    lines = first.splitlines()
    out.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    code, said = run_cli("subject-map", "--tracking-uri", demo.tracking_uri, "--out", str(out))
    assert code == 0 and "wrote 1 new subjects" in said, said
    again = out.read_text().splitlines()
    assert again[:-1] == [lines[0], *lines[2:]]
    assert again[-1].split(",")[0] == lines[1].split(",")[0]
    code, said = run_cli(
        "subject-map", "--tracking-uri", demo.tracking_uri, "--out", str(out), "--force"
    )
    assert code == 0 and out.read_text() == first  # rebuilt: the original numbering


def test_subject_map_of_an_experiment_without_subjects_is_an_error(
    demo: DemoStore, tmp_path: Path
) -> None:
    out = tmp_path / "map.csv"
    code, output = run_cli(
        "subject-map",
        "--tracking-uri",
        demo.tracking_uri,
        "--out",
        str(out),
        "--experiment",
        "Classification",
        "--kind",
        "Classification=generic",
    )
    assert code == 2 and "no subject codes in the runs of Classification" in output
    assert not out.exists()


def test_quickstart_twice(tmp_path: Path) -> None:
    code, output = run_cli("quickstart", str(tmp_path / "demo"), "--runs", "2")
    assert code == 0, output
    assert "figures: 1 leaderboard(s) rebuilt, curves drawn for 2 run(s)" in output
    code, output = run_cli("quickstart", str(tmp_path / "demo"), "--runs", "2")
    assert code == 0, output
    assert "reusing the demo tracking store" in output
    assert "materialized 0, skipped" in output
    assert "curves drawn for 0 run(s)" in output  # nothing extracted since they were drawn


def test_ui_starts_without_superseded_command_or_ignored_instance_warnings(
    demo: DemoStore, tmp_path: Path
) -> None:
    """`mlruns-assets ui` started from the project folder (whose dagster.yaml is only the
    template) serves without Dagster's `dg dev` advice or its ignored-dagster.yaml warning."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "ui.log"
    cmd = [sys.executable, "-m", "mlruns_assets.cli", "ui", "--tracking-uri", demo.tracking_uri]
    cmd += ["--db", str(tmp_path / "r.duckdb"), "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=clean_environ(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Serving dagster-webserver" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        time.sleep(3)  # the daemon's first lines
    finally:
        stop_process_group(proc)
    output = log.read_text()
    assert "Serving dagster-webserver" in output, output
    assert "SupersessionWarning" not in output and "dg dev" not in output, output
    assert "Found a dagster instance configuration value" not in output, output

"""``mlruns-assets``: the headless command line.

Exit codes: 0 success, 1 a partition (or check, or lint finding) failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy imports (dagster, mlflow) wait until a command needs them
    from mlruns_assets.project import ProjectConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"mlruns-assets: error: {message}\n")


def _project_config(args: argparse.Namespace) -> ProjectConfig:
    from mlruns_assets.project import ProjectConfig

    kinds = dict(k.split("=", 1) for k in (args.kind or []))
    return ProjectConfig(
        tracking_uri=args.tracking_uri,
        database=str(Path(args.db).expanduser()),
        experiments=tuple(args.experiment or ()),
        kinds=kinds,
        admit_failed_runs=args.admit_failed_runs,
        subject_map=str(Path(args.subject_map).resolve()) if args.subject_map else None,
        max_memory_gb=args.max_memory_gb,
        heartbeat_seconds=args.heartbeat_seconds,
        # Each command has only its own options; the others keep their defaults.
        **{
            name: getattr(args, name)
            for name in (
                "min_free_disk_gb",
                "hold_connection_seconds",
                "stall_timeout_seconds",
                "stall_sensor_interval_seconds",
            )
            if getattr(args, name, None) is not None
        },
    )


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", required=True, help="mlruns folder, sqlite:///..., http(s)://")
    p.add_argument("--db", required=True, help="the DuckDB results database (created if missing)")
    p.add_argument(
        "--experiment", action="append", help="experiment name (repeatable; default all)"
    )
    p.add_argument(
        "--kind",
        action="append",
        metavar="NAME=KIND",
        help="experiment kind: classification, imputation or generic (default: from the name)",
    )
    p.add_argument("--admit-failed-runs", action="store_true", help="also FAILED/KILLED runs")
    p.add_argument("--subject-map", help="private CSV/YAML map of original -> anonymized codes")
    p.add_argument("--max-memory-gb", type=float, default=4.0, help="RSS limit (default 4)")
    p.add_argument("--heartbeat-seconds", type=float, default=60.0, help="progress interval")
    p.add_argument(
        "--hold-connection-seconds",
        type=float,
        default=5.0,
        help="keep the write connection across partitions this long before letting other "
        "writers in (default 5; each partition is still its own transaction)",
    )
    p.add_argument(
        "--dagster-home", help="persistent Dagster instance (default: DB folder/.dagster)"
    )


def _cmd_extract(args: argparse.Namespace) -> int:
    from mlruns_assets.headless import UsageError, run_extract

    config = _project_config(args)
    try:
        summary = run_extract(config, Path(args.dagster_home) if args.dagster_home else None)
    except UsageError as exc:
        print(f"mlruns-assets: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in summary.lines():
        print(line)
    print(f"database: {Path(config.database).resolve()}")
    return EXIT_FAILED if summary.failed else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from mlruns_assets.demo import write_demo_store

    started = time.monotonic()
    store = write_demo_store(
        Path(args.path), backend=args.backend, runs=args.runs, bootstraps=args.bootstraps
    )
    print(f"demo store written in {time.monotonic() - started:.1f} s: {store.tracking_uri}")
    print(f"subject map (private): {store.subject_map_path}")
    return EXIT_OK


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """Write a demo store, extract it, and say where everything is."""
    from mlruns_assets.demo import write_demo_store

    root = Path(args.path).resolve()
    store = write_demo_store(root / "store", backend="sqlite", runs=args.runs)
    print(f"demo tracking store: {store.tracking_uri}")
    db = root / "results.duckdb"
    ns = _PARSER.parse_args(
        [
            "extract",
            "--tracking-uri",
            store.tracking_uri,
            "--db",
            str(db),
            "--subject-map",
            str(store.subject_map_path),
        ]
    )
    code = _cmd_extract(ns)
    print(
        "open the web UI on the same instance with:\n"
        f"  uv run mlruns-assets ui --tracking-uri {store.tracking_uri} --db {db} "
        f"--subject-map {store.subject_map_path}"
    )
    return code


def _cmd_ui(args: argparse.Namespace) -> int:
    """``dagster dev`` on the persistent instance beside the database."""
    from mlruns_assets.instance import default_dagster_home, prepare_dagster_home

    config = _project_config(args)
    if config.stall_timeout_seconds <= config.heartbeat_seconds:
        print(
            f"mlruns-assets: error: --stall-timeout-seconds ({config.stall_timeout_seconds:g}) "
            f"must exceed --heartbeat-seconds ({config.heartbeat_seconds:g}): a healthy step "
            "reports only that often",
            file=sys.stderr,
        )
        return EXIT_USAGE
    home = prepare_dagster_home(
        Path(args.dagster_home)
        if args.dagster_home
        else default_dagster_home(Path(config.database))
    )
    env = {**os.environ, **config.to_env(), "DAGSTER_HOME": str(home)}
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "mlruns_assets.definitions",
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(f"DAGSTER_HOME={home}\n{' '.join(cmd)}", file=sys.stderr)
    return subprocess.call(cmd, env=env)


def _cmd_check(args: argparse.Namespace) -> int:
    from mlruns_assets.check_command import check_database, format_results, load_registry
    from mlruns_assets.validation import ERROR

    db = Path(args.db)
    if not db.is_file():
        print(f"mlruns-assets: error: database {db} does not exist", file=sys.stderr)
        return EXIT_USAGE
    results = check_database(
        db,
        subject_map_configured=bool(args.subject_map or args.anonymized),
        original_pattern=args.original_pattern,
        registry=load_registry(Path(args.registry)) if args.registry else None,
    )
    for line in format_results(results):
        print(line)
    return EXIT_FAILED if any(not o.passed and o.severity == ERROR for _, o in results) else EXIT_OK


def _cmd_subject_map(args: argparse.Namespace) -> int:
    from mlruns_assets.subject_map_command import build_map_from_store

    try:
        n = build_map_from_store(args.tracking_uri, args.experiment, Path(args.out))
    except RuntimeError as exc:
        print(f"mlruns-assets: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {n} subjects to {args.out} (private: keep it out of public outputs)")
    return EXIT_OK


def _cmd_tables(args: argparse.Namespace) -> int:
    from mlruns_assets.extraction import all_tables
    from mlruns_assets.tables import markdown_reference

    print(markdown_reference(all_tables()), end="")
    return EXIT_OK


def _cmd_lint(args: argparse.Namespace) -> int:
    from mlruns_assets.lint import main as lint_main

    return lint_main(args.paths)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlruns-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("extract", help="extract every missing or failed partition")
    _add_store_args(p)
    p.add_argument(
        "--min-free-disk-gb",
        type=float,
        default=5.0,
        help="refuse to start with less free disk where the database lives (default 5)",
    )
    p.set_defaults(func=_cmd_extract)
    p = sub.add_parser("demo", help="write a demo tracking store")
    p.add_argument("path")
    p.add_argument("--backend", choices=["sqlite", "file"], default="sqlite")
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--bootstraps", type=int, default=50)
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("quickstart", help="write a demo store and extract it")
    p.add_argument("path", nargs="?", default="demo")
    p.add_argument("--runs", type=int, default=12)
    p.set_defaults(func=_cmd_quickstart)
    p = sub.add_parser("ui", help="start the web UI on the persistent instance")
    _add_store_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument(
        "--stall-timeout-seconds",
        type=float,
        default=90.0,
        help="fail an extraction run silent this long: hung (default 90)",
    )
    p.add_argument(
        "--stall-sensor-interval-seconds",
        type=int,
        default=30,
        help="how often the stall sensor looks (default 30; the daemon looks at most every 5)",
    )
    p.set_defaults(func=_cmd_ui)
    p = sub.add_parser("check", help="run every asset check against a database")
    p.add_argument("--db", required=True)
    p.add_argument("--subject-map", help="a map is configured: no original code may remain")
    p.add_argument("--anonymized", action="store_true", help="same, without naming the map")
    p.add_argument("--original-pattern", default=r"^PLR\d{4}$", help="regex of original codes")
    p.add_argument("--registry", help="YAML of allowed method names per column")
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("subject-map", help="build a private H001/G001 map from an experiment")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--out", required=True, help="private output path (CSV)")
    p.set_defaults(func=_cmd_subject_map)
    p = sub.add_parser("tables", help="print the reference of every table (markdown)")
    p.set_defaults(func=_cmd_tables)
    p = sub.add_parser("lint", help="report unbounded accumulation in loops")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=_cmd_lint)
    return parser


_PARSER = _build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    args = _PARSER.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's report: issue 13's targets and each lever as measured ratios, the Markdown
report and the plot, all from the JSON that ``run.py`` writes (``run.py --render`` redraws them).
Reported, never asserted: the machine is shared and noisy."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def backfill_pickup_s(d: dict[str, Any]) -> float | None:
    """Seconds from the launch mutation to the backfill daemon queueing the first run."""
    timeline = d.get("run_timeline_s")
    return min(t[0] for t in timeline) if timeline else None


def ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y else None


def _tree_cpu(result: dict[str, Any]) -> float | None:
    """CPU seconds of a variant's whole process tree (polled), else of the command."""
    tree = result.get("tree") or {}
    return tree.get("cpu_s_sum", result.get("cpu_s"))


def evaluate_targets(report: dict[str, Any]) -> dict[str, Any]:
    """Issue 13's targets as measured ratios (``meets`` is reported, never asserted)."""
    v = report["variants"]
    artifact_mb = report["store"]["largest_artifact_mb"]
    out: dict[str, Any] = {}

    def add(name: str, value: float | None, target: str, ok: bool | None, **extra: Any) -> None:
        out[name] = {"value": value, "target": target, "meets": ok, **extra}

    def le(x: float | None, bound: float) -> bool | None:
        return None if x is None else x <= bound

    def ge(x: float | None, bound: float) -> bool | None:
        return None if x is None else x >= bound

    pf, c1 = v.get("floor_physical"), v.get("c1")
    if pf and c1:
        c_ms = c1["detail"]["ms_per_partition_in_process"]
        f_ms = pf["detail"]["per_partition_ms"]["total"]
        value = ratio(c_ms, f_ms)
        add(
            "c_over_physical_floor",
            value,
            "<= 2 ((c) --workers 1, in process, per partition / physical floor per run)",
            le(value, 2.0),
            detail=(
                f"{fmt(c_ms, 1)} vs {fmt(f_ms, 1)} ms per partition; CPU of the whole process "
                f"(start-up included) {fmt(c1['cpu_s'], 1)} s vs {fmt(pf['cpu_s'], 1)} s "
                f"(x{fmt(ratio(c1['cpu_s'], pf['cpu_s']))})"
            ),
            load_avg={"c1": c1["load_avg"], "floor_physical": pf["load_avg"]},
        )
    c2 = v.get("c2")
    if c1 and c2:
        speedup = ratio(c1["detail"]["in_process_s"], c2["detail"]["in_process_s"])
        add(
            "workers2_throughput_over_workers1",
            speedup,
            f">= 1.6 at N = {c1['detail']['materialized']} (in-process throughput)",
            ge(speedup, 1.6),
            detail=(
                f"in process {fmt(c1['detail']['in_process_s'], 1)} s vs "
                f"{fmt(c2['detail']['in_process_s'], 1)} s; whole process "
                f"{fmt(c1['wall_s'], 1)} s vs {fmt(c2['wall_s'], 1)} s "
                f"(x{fmt(ratio(c1['wall_s'], c2['wall_s']))}); "
                f"{c2['detail']['worker_processes']} worker processes; CPU of the process "
                f"tree {fmt(_tree_cpu(c1), 1)} s vs {fmt(_tree_cpu(c2), 1)} s"
            ),
            load_avg={"c1": c1["load_avg"], "c2": c2["load_avg"]},
        )
        added = max(c2["detail"]["worker_processes"] - 1, 1)
        one = c1.get("tree_peak_above_import_mb", c1["peak_above_import_mb"])
        two = c2.get("tree_peak_above_import_mb")
        per_worker = ratio(None if two is None else two - one, artifact_mb * added)
        pss = c2.get("tree_peak_pss_above_import_mb")
        add(
            "workers2_rss_per_added_worker_over_artifact",
            per_worker,
            "<= 3 (tree peak above imports - one-worker peak, per added worker, in largest "
            "artifacts)",
            le(per_worker, 3.0),
            detail=(
                f"tree peak RSS above imports {fmt(two, 0)} MB (PSS {fmt(pss, 0)} MB) vs "
                f"one worker {fmt(one, 0)} MB; limit {fmt(one + 3 * artifact_mb * added, 0)} MB"
            ),
            pss_value=ratio(None if pss is None else pss - one, artifact_mb * added),
            load_avg={"c1": c1["load_avg"], "c2": c2["load_avg"]},
        )
    a100, c100 = v.get("a100"), v.get("c100")
    if a100 and c100:
        value = ratio(a100["wall_s"], c100["wall_s"])
        add(
            "first_extract_100_speedup_over_row_by_row",
            value,
            ">= 2.5 (whole-process wall, start-up included, default workers)",
            ge(value, 2.5),
            detail=(
                f"{fmt(a100['wall_s'], 1)} s vs {fmt(c100['wall_s'], 1)} s "
                f"({c100['detail']['worker_processes']} worker processes)"
            ),
            load_avg={"a100": a100["load_avg"], "c100": c100["load_avg"]},
        )
    resume = v.get("resume")
    if resume:
        wall = resume["wall_s"]
        no_artifact = resume["detail"]["opened_no_artifact"]
        add(
            "resume_wall_s",
            wall,
            "<= 2.5 s wall, no artifact opened (artifact folder renamed away)",
            le(wall, 2.5) and no_artifact,
            detail=(
                f"opened no artifact: {no_artifact}; in process "
                f"{fmt(resume['detail']['in_process_s'], 2)} s; start-up floor "
                f"{fmt(resume['detail']['startup_floor_s'], 2)} s"
            ),
            load_avg={"resume": resume["load_avg"]},
        )
    d = v.get("d")
    if d and not d.get("skipped") and c2:
        value = ratio(d["wall_s"], c2["wall_s"])
        add(
            "backfill_over_headless",
            value,
            "<= 1.5 (UI backfill from the mutation to the last materialization / extract "
            "with default workers, whole process)",
            le(value, 1.5),
            detail=(
                f"{fmt(d['wall_s'], 1)} s vs {fmt(c2['wall_s'], 1)} s; vs --workers 1: "
                f"x{fmt(ratio(d['wall_s'], c1['wall_s'] if c1 else None))}"
                + (
                    f"; the daemon queued the first run {fmt(pickup, 1)} s after the launch "
                    f"(Dagster's backfill daemon looks every 30 s): without that wait "
                    f"x{fmt(ratio(d['wall_s'] - pickup, c2['wall_s']))}"
                    if (pickup := backfill_pickup_s(d)) is not None
                    else ""
                )
            ),
            load_avg={"d": d["load_avg"], "c2": c2["load_avg"]},
        )
    signals = report.get("signals")
    if signals and "targets" in signals:
        rows = signals["variants"]
        value = signals["targets"]["a_over_c"]["value"]
        add(
            "signals_extract_over_executemany",
            value,
            ">= 10 ((a) seed executemany wall / (c) extract wall, 20 x 507 x 1,981)",
            ge(value, 10.0),
            detail=f"{fmt(rows[0]['wall_s'], 1)} s vs {fmt(rows[2]['wall_s'], 1)} s",
            load_avg={"a": rows[0].get("load_avg"), "c": rows[2].get("load_avg")},
        )
    return out


def evaluate_levers(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each lever with and without, side by side (ms unless said; ratio = without / with)."""
    v, rows = report["variants"], []
    c1, stock, c2 = v.get("c1"), v.get("c1_stock"), v.get("c2")
    breakdown = report.get("breakdowns", {})

    def row(lever: str, with_: Any, without: Any, unit: str, load: Any, note: str = "") -> None:
        rows.append(
            {
                "lever": lever,
                "with": with_,
                "without": without,
                "unit": unit,
                "ratio_without_over_with": ratio(without, with_),
                "load_avg": load,
                "note": note,
            }
        )

    if c1 and stock:
        row(
            "Dagster storage: kept connections vs stock SQLite ((c) --workers 1, in process)",
            c1["detail"]["ms_per_partition_in_process"],
            stock["detail"]["ms_per_partition_in_process"],
            "ms/partition",
            {"kept": c1["load_avg"], "stock": stock["load_avg"]},
            f"whole process {fmt(c1['wall_s'], 1)} s vs {fmt(stock['wall_s'], 1)} s",
        )
        row(
            "  the same, CPU of the whole process (less sensitive to the shared machine's load)",
            c1["cpu_s"],
            stock["cpu_s"],
            "CPU s",
            {"kept": c1["load_avg"], "stock": stock["load_avg"]},
        )
        kept_b, stock_b = breakdown.get("c1"), breakdown.get("c1_stock")
        if kept_b and stock_b:
            row(
                "  median write of one ASSET_MATERIALIZATION event",
                kept_b["median_event_write_ms"],
                stock_b["median_event_write_ms"],
                "ms/event",
                {"kept": c1["load_avg"], "stock": stock["load_avg"]},
                f"{fmt(kept_b['events_per_partition'], 1)} vs "
                f"{fmt(stock_b['events_per_partition'], 1)} events per partition",
            )
    if c1 and c2:
        row(
            f"extract --workers 2 vs 1 (in process, N = {c1['detail']['materialized']})",
            c2["detail"]["ms_per_partition_in_process"],
            c1["detail"]["ms_per_partition_in_process"],
            "ms/partition",
            {"workers2": c2["load_avg"], "workers1": c1["load_avg"]},
            f"tree peak RSS {fmt(c2.get('tree_peak_rss_mb'), 0)} vs "
            f"{fmt(c1.get('tree_peak_rss_mb'), 0)} MB",
        )
        row(
            "  the same, CPU of the whole process tree",
            _tree_cpu(c2),
            _tree_cpu(c1),
            "CPU s",
            {"workers2": c2["load_avg"], "workers1": c1["load_avg"]},
        )
    lv = report.get("levers")
    if lv:
        load = lv["load_avg"]
        m = lv["metric_histories"]
        row(
            "metric histories: metric_histories (16 runs a query) vs metric_history per run",
            m["bulk_16_runs_ms"],
            m["per_run_ms"],
            "ms/run",
            load,
            f"{m['points_per_run']} points per run",
        )
        a = lv["artifact_listing"]
        row(
            "artifact listing: the run's artifact URI vs client.list_artifacts(run_id, folder)",
            a["run_artifact_uri_ms"],
            a["client_list_artifacts_ms"],
            "ms/run",
            load,
        )
        val = lv["validation"]
        row(
            "validation: one run_failures_sql query vs run_checks (detailed)",
            val["run_failures_sql_ms"],
            val["run_checks_ms"],
            "ms/partition",
            load,
            f"{lv.get('detailed_queries', '?')} detailed checks, on a {val['db_rows_runs']}-run "
            "database",
        )
        ct = lv["create_tables"]
        row(
            f"tables created once per connection vs CREATE TABLE IF NOT EXISTS x{ct['tables']} "
            "per partition (replace_partition of one run)",
            ct["tables_known_ms"],
            ct["create_if_not_exists_x11_ms"],
            "ms/partition",
            load,
            f"ensure_tables alone {fmt(ct['ensure_tables_alone_ms'], 2)} ms",
        )
        cp = lv.get("checkpoint_read")
        if cp:
            row(
                "checkpoint read: latest storage id per partition, then those events vs every "
                "materialization event (what `extract` reads of each asset before it starts)",
                cp["latest_by_storage_id_ms"],
                cp["every_event_ms"],
                "ms/asset",
                load,
                f"{cp['partitions']} partitions, {cp['materialization_events']} events",
            )
        assets = lv.get("assets")
        if assets:
            row(
                "assets per experiment: one vs two (today's runs + stratos), a Dagster run of "
                "events only (planned + materialized)",
                assets["one_asset_ms"],
                assets["two_assets_ms"],
                "ms/partition",
                load,
                f"{assets['partitions_per_run']} partitions a run; two kept (one would rename "
                "every asset key, and so drop every partition's status)",
            )
    return rows


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


NAMES = {
    "floor_physical": "physical floor: unpickle + tables + Arrow append + commit",
    "b": "(b) project floor: extraction calls + replace_partition",
    "c1": "(c) `mlruns-assets extract --workers 1`",
    "c1_stock": "(c) `--workers 1`, stock Dagster storage",
    "c2": "(c) `mlruns-assets extract --workers 2`",
    "resume": "resume: `extract` on the complete DB",
    "a100": "(a) row-by-row exporter, first 100 runs",
    "c100": "(c) `extract` (default workers), first 100 runs",
    "d": "(d) UI backfill (daemon)",
}


def markdown(report: dict[str, Any]) -> str:
    cfg, v = report["config"], report["variants"]
    code = report["code"]
    lines = [
        f"# Extraction benchmark: N={cfg['runs']} runs, B={cfg['bootstraps']} bootstraps",
        "",
        f"{report['machine']['cpus']} CPUs, shared with other engineers' processes (1-minute "
        f"load average before/after each figure in its last column). Largest metrics pickle "
        f"{report['store']['largest_artifact_mb']:.1f} MB; store written in "
        f"{report['store']['generate_s']:.0f} s (reused: {report['store'].get('reused')}). "
        f"Code: {code['head']} + {len(code['modified_since_head'])} modified package files "
        f"(sources hash {code['package_sha256']}; package files changed during the run: "
        f"{', '.join(code.get('changed_during_run') or []) or 'none'}). "
        f"Run {cfg['started']} to {cfg.get('finished', '?')}.",
        "",
        "## Issue 13 targets (measured in this run, reported, not asserted)",
        "",
        "| target | value | goal | meets | detail | load avg |",
        "|---|---:|---|---|---|---|",
    ]
    for name, t in report.get("targets", {}).items():
        lines.append(
            f"| {name} | {fmt(t['value'])} | {t['target']} | {fmt(t['meets'])} "
            f"| {t.get('detail', '')} | {t.get('load_avg', '')} |"
        )
    lines += [
        "",
        "## Levers side by side",
        "",
        "| lever | with | without | unit | without / with | load avg | note |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in report.get("levers_table", []):
        lines.append(
            f"| {r['lever']} | {fmt(r['with'], 2)} | {fmt(r['without'], 2)} | {r['unit']} "
            f"| {fmt(r['ratio_without_over_with'])} | {r['load_avg']} | {r['note']} |"
        )
    for key, b in report.get("breakdowns", {}).items():
        lines.append(
            f"\n({key}) Dagster events per partition: {fmt(b['events_per_partition'], 2)} "
            f"({b['dagster_runs']} Dagster runs, {b['events_total']} events); median write of "
            f"one ASSET_MATERIALIZATION event: {fmt(b['median_event_write_ms'], 2)} ms; "
            f"instance {b.get('instance_class')}, event storage {b.get('event_storage_class')}."
        )
    lines += [
        "",
        "## Variants",
        "",
        "Import MB: peak RSS of a process that only imports what the variant imports. Ready "
        "MB: one that also sets up what the variant uses before its first run. Tree MB: peak "
        "of the summed RSS of the command's whole process tree (fork server and worker "
        "processes included), polled every 50 ms (benchmarks/measure.py); PSS counts pages "
        "shared after the fork once. Measurement floor "
        f"{fmt(report.get('measurement_floor_mb'), 0)} MB.",
        "",
        "| variant | runs | wall s | in-process s | ms/partition in process | runs/s (wall) "
        "| CPU s (tree: all processes, polled) | peak RSS MB | import MB | above import MB "
        "| tree peak RSS MB | tree above import MB (PSS) | DB MB | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in NAMES.items():
        r = v.get(key)
        if not r:
            continue
        if r.get("skipped"):
            lines.append(f"| {label} | skipped |" + " |" * 12)
            continue
        if key == "d":
            lines.append(
                f"| {label} | {r['partitions']} | {fmt(r['wall_s'], 1)} | | | "
                f"{fmt(r['runs_per_s'])} | {fmt(r['tree_cpu_s'], 1)} | "
                f"{fmt(r['worker_peak_rss_mb'], 0)} worker | | | "
                f"{fmt(r['tree_peak_rss_mb'], 0)} | {fmt(r['tree_peak_above_idle_mb'], 0)} "
                f"above idle | {fmt(r.get('db_mb'), 1)} | {r.get('load_avg', '-')} |"
            )
            continue
        detail = r.get("detail", {})
        runs = detail.get("materialized", detail.get("runs"))
        if key == "resume":
            runs = f"{detail.get('skipped')} skipped"
        in_proc = detail.get("in_process_s", detail.get("seconds"))
        per = detail.get("ms_per_partition_in_process")
        if per is None and "per_partition_ms" in detail:
            per = detail["per_partition_ms"].get("total")
        if per is None and in_proc is not None and detail.get("runs"):
            per = 1000 * in_proc / detail["runs"]
        pss = r.get("tree_peak_pss_above_import_mb")
        tree_above = (
            f"{fmt(r.get('tree_peak_above_import_mb'), 0)} ({fmt(pss, 0)})"
            if "tree_peak_above_import_mb" in r
            else ""
        )
        cpu = fmt(r["cpu_s"], 1)
        if r.get("tree") and "cpu_s_sum" in r["tree"]:
            cpu += f" (tree {fmt(r['tree']['cpu_s_sum'], 1)})"
        lines.append(
            f"| {label} | {runs} | {fmt(r['wall_s'], 1)} | {fmt(in_proc, 1)} | {fmt(per, 1)} "
            f"| {fmt(r['runs_per_s'])} | {cpu} | {fmt(r['peak_rss_mb'], 0)} "
            f"| {fmt(r['import_rss_mb'], 0)} | {fmt(r['peak_above_import_mb'], 0)} "
            f"| {fmt(r.get('tree_peak_rss_mb'), 0)} | {tree_above} | {fmt(r.get('db_mb'), 1)} "
            f"| {r['load_avg']} |"
        )
    pf = v.get("floor_physical")
    if pf:
        ms = pf["detail"]["per_partition_ms"]
        lines += [
            "",
            f"Physical floor per run: {fmt(ms['unpickle'], 1)} ms unpickle, "
            f"{fmt(ms['build_tables'], 1)} ms tables, {fmt(ms['append_commit'], 1)} ms Arrow "
            f"append + commit ({pf['detail']['tables']} tables); untimed set-up (listing, "
            f"bulk metric histories, artifact paths) {fmt(pf['detail']['setup_s'], 1)} s.",
        ]
    resume = v.get("resume", {}).get("detail")
    if resume:
        lines += [
            "",
            f"Resume: {resume['skipped']} partitions skipped, none materialized, with the store's "
            f"artifact folder renamed away (opened no artifact: {resume['opened_no_artifact']}). "
            f"A process that only imports, opens the tracking store and the Dagster instance "
            f"takes {fmt(resume['startup_floor_s'], 2)} s on its own (load "
            f"{resume['startup_floor_load_avg']}); resume spends "
            f"{fmt(resume['beyond_startup_floor_s'], 2)} s beyond that.",
        ]
    d = v.get("d")
    if d and not d.get("skipped"):
        lines += [
            "",
            f"Backfill: {d['runs']} range runs ({', '.join(d['run_statuses'])}); the first "
            f"queued {fmt(backfill_pickup_s(d), 1)} s and started "
            f"{fmt(d['first_run_started_after_s'], 1)} s after the launch mutation; "
            f"per run (queued, started, ended; s after the launch): "
            f"{d.get('run_timeline_s', 'not recorded')}; "
            f"run time summed over runs {fmt(d['run_seconds_sum'], 1)} s; "
            f"{d['worker_processes']} worker processes; webserver and daemon start-up "
            f"(not timed) {fmt(d['startup_s'].get('webserver_s'), 1)} s and "
            f"{fmt(d['startup_s'].get('daemon_s'), 1)} s.",
        ]
    b = report.get("breakdowns", {}).get("c1")
    if b and "per_partition_ms" in b:
        lines += [
            "",
            "## Where (c) --workers 1 spends its time, per partition (ms)",
            "",
            "| part | ms/partition |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {fmt(val, 1)} |" for k, val in b["per_partition_ms"].items()]
    cp = report.get("commit_patterns")
    if cp:
        lines += [
            "",
            f"## Commit pattern alone ({cp['partitions']} partitions of one real run's "
            f"{cp['rows_per_partition']} rows, with validation; load "
            f"{cp.get('load_avg', '-')})",
            "",
            "| pattern | ms/partition | DB MB | full-table GROUP BY peak MB |",
            "|---|---:|---:|---:|",
        ]
        for pattern in (
            "one_connection",
            "partition_writer",
            "per_partition",
            "per_partition_vacuum",
        ):
            if pattern in cp:
                r = cp[pattern]
                lines.append(
                    f"| {pattern} | {fmt(r['ms_per_partition'], 1)} | {fmt(r['db_mb'], 1)} | "
                    f"{fmt(r['full_scan_peak_mb'], 1)} |"
                )
    if report["sweep"]:
        lines += [
            "",
            "## N sweep",
            "",
            "| variant | N | wall s | in-process s | runs/s (wall) | peak RSS MB "
            "| above import MB | tree above import MB | DB MB | load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for p in sorted(report["sweep"], key=lambda p: (p["variant"], p["runs"])):
            lines.append(
                f"| {p['variant']} | {p['runs']} | {fmt(p['wall_s'], 1)} | "
                f"{fmt(p.get('in_process_s'), 1)} | {fmt(p['runs_per_s'])} | "
                f"{fmt(p['peak_rss_mb'], 0)} | {fmt(p['peak_above_import_mb'], 0)} | "
                f"{fmt(p.get('tree_peak_above_import_mb'), 0)} | {fmt(p.get('db_mb'), 1)} "
                f"| {p.get('load_avg')} |"
            )
        lines += ["", cfg["sweep_note"]]
    signals = report.get("signals")
    if signals:
        lines += [
            "",
            f"## Signals ({signals['config']['runs']} runs x {signals['config']['subjects']} "
            f"subjects x {signals['config']['length']} points; {signals['path']})",
            "",
            "| variant | wall s | MB/s | peak RSS MB | above import MB | load avg |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in signals["variants"]:
            lines.append(
                f"| {r['variant']} | {r['wall_s']} | {r['mb_per_s']} | {r['peak_rss_mb']} | "
                f"{r['above_baseline_mb']} | {r.get('load_avg', '-')} |"
            )
    for title, c in (report.get("consistency") or {}).items():
        lines += [
            "",
            f"## essential_metrics ({title}) vs ({c['reference']}) over {c['runs']} runs",
            "",
        ]
        for name, item in c["variants"].items():
            lines.append(
                f"- ({name}): same runs {item['same_runs']}, max |diff| "
                f"{item['max_abs_diff']:.2e}, NULL mismatches {item['null_mismatches']}, "
                f"same row counts in every table {item['same_row_counts']}"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    series = (
        ("floor_physical", "physical floor", "o", "peak_above_import_mb"),
        (
            "extract",
            "extract (default workers; RSS: process tree)",
            "s",
            "tree_peak_above_import_mb",
        ),
    )
    for variant, label, marker, rss_key in series:
        points = sorted(
            (p["runs"], p["wall_s"], p.get(rss_key) or p["peak_above_import_mb"])
            for p in report["sweep"]
            if p["variant"] == variant
        )
        if not points:
            continue
        n, t, m = zip(*points, strict=True)
        (line,) = ax_t.plot(n, t, marker=marker, label=label)
        ax_m.plot(n, m, marker=marker, color=line.get_color(), label=f"{label}, above import")
    artifact = report["store"]["largest_artifact_mb"]
    ax_m.axhline(3 * artifact, color="grey", linestyle="--", label="3x largest artifact")
    ax_t.set(xlabel="runs (N)", ylabel="wall time (s)", title="Time vs N")
    ax_m.set(xlabel="runs (N)", ylabel="peak RSS above imports (MB)", title="Peak RSS vs N")
    ax_m.set_ylim(bottom=0)
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    cfg = report["config"]
    fig.suptitle(f"mlruns-assets extraction, B={cfg['bootstraps']} (2-core shared machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

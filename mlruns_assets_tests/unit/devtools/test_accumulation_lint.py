"""Tests for the accumulation lint (issue 7, incident 003)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlruns_assets.devtools.accumulation_lint import Finding, lint_paths, main

HINT = "write per item or mark '# bounded: <why>'"


def lint(tmp_path: Path, source: str, name: str = "mod.py") -> list[Finding]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return lint_paths([path])


def messages(tmp_path: Path, source: str) -> list[str]:
    return [f.message for f in lint(tmp_path, source)]


def test_incident_pattern_exact_message_and_format(tmp_path: Path) -> None:
    findings = lint(
        tmp_path,
        """
        def extract(conn, pickle_files):
            all_rows = []
            for pickle_path in pickle_files:
                signals = load(pickle_path)
                for sig in signals:
                    all_rows.append(sig)
            conn.executemany("INSERT INTO s VALUES (?)", all_rows)
        """,
    )
    assert len(findings) == 1
    finding = findings[0]
    assert (finding.line, finding.col) == (6, 13)
    assert finding.message == (
        "list 'all_rows' grows inside the loop at line 3 (append) and is passed on after it"
        f" at line 7; {HINT}"
    )
    assert str(finding) == f"{tmp_path / 'mod.py'}:6:13: {finding.message}"


GROWTH_CASES = {
    "extend": ("rows = []", "rows.extend(load(p))", "return rows"),
    "plus_equals": ("rows = []", "rows += load(p)", "return rows"),
    "plus_equals_list_operand": ("rows = load_first()", "rows += [p]", "return rows"),
    "self_concat": ("rows = []", "rows = rows + [p]", "return rows"),
    "item_assignment": ("by_run = {}", "by_run[p] = load(p)", "return by_run"),
    "counter_item": ("counts = Counter()", "counts[p] += 1", "return counts"),
    "update": ("meta = dict()", "meta.update(load(p))", "return meta"),
    "add": ("seen = set()", "seen.add(p)", "return seen"),
    "or_equals": ("seen = set()", "seen |= {p}", "return seen"),
    "insert": ("rows = list()", "rows.insert(0, p)", "return rows"),
    "setdefault_append": ("groups = {}", "groups.setdefault(p.run, []).append(p)", "return groups"),
    "defaultdict_item_append": (
        "groups = defaultdict(list)",
        "groups[p.run].append(p)",
        "return groups",
    ),
    "heappush": ("heap = []", "heapq.heappush(heap, p)", "return heap"),
    "deque": ("queue = deque()", "queue.appendleft(p)", "return queue"),
    "passed_to_executemany": ("rows = []", "rows.append(p)", "conn.executemany(SQL, rows)"),
    "yielded": ("rows = []", "rows.append(p)", "yield rows"),
    "stored_elsewhere": ("rows = []", "rows.append(p)", "self.cache['rows'] = rows"),
    "comprehension_seed": ("rows = [x for x in first]", "rows.append(p)", "return rows"),
}


@pytest.mark.parametrize(("create", "grow", "use"), GROWTH_CASES.values(), ids=GROWTH_CASES)
def test_growth_in_loop_used_after_is_reported(
    tmp_path: Path, create: str, grow: str, use: str
) -> None:
    source = f"def f(self, conn, paths):\n    {create}\n    for p in paths:\n        {grow}\n"
    findings = lint(tmp_path, source + f"    {use}\n")
    assert len(findings) == 1, findings
    assert findings[0].line == 4
    assert "grows inside the loop at line 3" in findings[0].message
    assert "passed on after it at line 5" in findings[0].message


def test_operation_and_kind_are_named(tmp_path: Path) -> None:
    [msg] = messages(tmp_path, "d = {}\nfor k in keys():\n    d[k] = 1\nsave(d)\n")
    assert msg.startswith("dict 'd' grows inside the loop at line 2 (item assignment)")


LOOP_KINDS = {  # loop source, line of the outermost unbounded loop
    "while": ("while pending():\n        rows.append(1)", 3),
    "async_for": ("async for p in stream():\n        rows.append(p)", 3),
    "unbounded_inside_bounded": (
        "for m in ('a', 'b'):\n        for p in x:\n            rows.append(p)",
        4,
    ),
    "bounded_inside_unbounded": (
        "for p in x:\n        for m in ('a', 'b'):\n            rows.append(m)",
        3,
    ),
}


@pytest.mark.parametrize(("loop", "loop_line"), LOOP_KINDS.values(), ids=LOOP_KINDS)
def test_other_loop_kinds(tmp_path: Path, loop: str, loop_line: int) -> None:
    source = f"async def f(x):\n    rows = []\n    {loop}\n    return rows\n"
    [finding] = lint(tmp_path, source)
    assert f"grows inside the loop at line {loop_line} (append)" in finding.message


@pytest.mark.parametrize("iterable", ["[first, *rest]", "(*runs,)", "{**base}", "range(n)"])
def test_literal_with_unpacking_is_unbounded(tmp_path: Path, iterable: str) -> None:
    source = f"rows = []\nfor r in {iterable}:\n    rows.append(r)\nsave(rows)\n"
    assert len(lint(tmp_path, source)) == 1


def test_use_in_for_else_counts_as_after(tmp_path: Path) -> None:
    source = """
    rows = []
    for p in paths:
        rows.append(p)
    else:
        write(rows)
    """
    assert len(lint(tmp_path, source)) == 1


def test_comprehension_feeding_a_write(tmp_path: Path) -> None:
    [msg] = messages(
        tmp_path,
        """
        def f(conn, pickles):
            rows = [row(s) for p in pickles for s in load(p)]
            log(len(rows))
            conn.executemany(SQL, rows)
        """,
    )
    assert msg == (
        "list 'rows' is built from a comprehension over an unbounded iterable and passed to"
        f" executemany() at line 4; {HINT}"
    )


def test_materialised_generator_and_inline_comprehension(tmp_path: Path) -> None:
    source = """
    rows = list(row(p) for p in runs)
    table = pa.Table.from_pylist(rows)
    conn.executemany(SQL, [row(p) for p in runs])
    """
    found = lint(tmp_path, source)
    assert [f.line for f in found] == [1, 3]
    assert found[1].message.startswith("list comprehension over an unbounded iterable")


NEGATIVE_CASES = {
    "per_item_write_inside_loop": """
        for p in pickles:
            rows = []
            for s in load(p):
                rows.append(s)
            conn.executemany(SQL, rows)
        """,
    "incident_fix_comprehension_inside_loop": """
        for p in pickles:
            rows = [row(s) for s in load(p)]
            conn.executemany(SQL, rows)
        """,
    "reset_by_assignment_inside_loop": """
        rows = []
        for p in pickles:
            rows.extend(load(p))
            conn.executemany(SQL, rows)
            rows = []
        write(rows)
        """,
    "batched_with_clear_and_final_flush": """
        batch = []
        for r in rows():
            batch.append(r)
            if len(batch) >= 1000:
                flush(batch)
                batch.clear()
        flush(batch)
        """,
    "not_used_after_loop": """
        def f(items):
            seen = set()
            for item in items:
                if item in seen:
                    continue
                seen.add(item)
                write(item)
        """,
    "rebound_before_use": """
        rows = []
        for p in paths:
            rows.append(p)
        rows = []
        return_value = rows
        """,
    "bounded_literal_loops": """
        rows = []
        for mode in ("train", "test"):
            rows.append(mode)
        for i in range(3):
            rows.append(i)
        for i, m in enumerate(["a", "b"]):
            rows.append(m)
        save(rows)
        """,
    "list_item_assignment_does_not_grow": """
        out = [None, None]
        for i in indices:
            out[i % 2] = i
        save(out)
        """,
    "deque_with_maxlen": """
        recent = deque(maxlen=10)
        for r in stream():
            recent.append(r)
        save(recent)
        """,
    "generator_streams_into_write": """
        conn.executemany(SQL, (row(p) for p in runs))
        names = [r.name for r in runs]
        log(", ".join(names))
        """,
    "comprehension_over_literal": """
        rows = [m for m in ("a", "b")]
        conn.executemany(SQL, rows)
        """,
    "growth_in_nested_function_is_its_scope": """
        def outer(paths):
            rows = []
            def add(p):
                rows.append(p)
            for p in paths:
                add(p)
            return rows
        """,
}


@pytest.mark.parametrize("source", NEGATIVE_CASES.values(), ids=NEGATIVE_CASES)
def test_ordinary_code_is_not_reported(tmp_path: Path, source: str) -> None:
    assert lint(tmp_path, source) == []


def test_same_name_in_another_function_is_not_confused(tmp_path: Path) -> None:
    source = """
    def collect(items):
        rows = []
        for item in items:
            rows.append(item)
            write(rows[-1])

    def report(rows):
        return rows  # a different 'rows': no rebinding here, only scoping tells them apart

    def module_level():
        return rows

    class Sink:
        def flush(self, rows):
            return rows

    rows = [1, 2]
    """
    assert lint(tmp_path, source) == []


@pytest.mark.parametrize(
    "source",
    [
        "rows = []  # bounded: one row per config, ~300\nfor c in configs():\n    rows.append(c)\n",
        "rows = []\nfor c in configs():\n    rows.append(c)  # bounded: at most 4 splits\n",
        "rows = [  # noqa: X  # Bounded: three columns\n]\nfor c in cs():\n    rows.append(c)\n",
    ],
    ids=["on_creation", "on_growth", "multiline_creation"],
)
def test_bounded_marker_with_reason_exempts(tmp_path: Path, source: str) -> None:
    assert lint(tmp_path, source + "save(rows)\n") == []


def test_bounded_marker_without_reason_is_a_finding(tmp_path: Path) -> None:
    source = "rows = []  # bounded:\nfor c in configs():\n    rows.append(c)\nsave(rows)\n"
    found = lint(tmp_path, source)
    assert [(f.line, f.message) for f in found][0] == (1, "bounded marker needs a reason")
    assert found[0].col == 12
    assert "grows inside the loop" in found[1].message  # the marker did not count


def test_unbounded_comment_is_not_a_marker(tmp_path: Path) -> None:
    source = "rows = []  # unbounded: sadly\nfor c in cs():\n    rows.append(c)\nsave(rows)\n"
    assert len(lint(tmp_path, source)) == 1


def test_name_of_container_never_exempts(tmp_path: Path) -> None:
    source = "bounded_rows = []\nfor c in cs():\n    bounded_rows.append(c)\nsave(bounded_rows)\n"
    assert len(lint(tmp_path, source)) == 1


def test_syntax_error_is_reported(tmp_path: Path) -> None:
    [finding] = lint(tmp_path, "def broken(:\n")
    assert finding.message.startswith("cannot parse: ")


def test_directories_recurse_and_skip_hidden(tmp_path: Path) -> None:
    bad = "rows = []\nfor c in cs():\n    rows.append(c)\nsave(rows)\n"
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / ".venv").mkdir()
    (tmp_path / "pkg" / "sub" / "a.py").write_text(bad)
    (tmp_path / "pkg" / ".venv" / "b.py").write_text(bad)
    (tmp_path / "pkg" / "notes.txt").write_text(bad)
    assert [f.path.name for f in lint_paths([tmp_path / "pkg"])] == ["a.py"]


def test_main_clean_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.py").write_text("def f(xs):\n    return [x for x in xs]\n")
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no accumulation findings in 1 file(s)\n"


def test_main_findings_exit_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("rows = []\nfor c in cs():\n    rows.append(c)\nsave(rows)\n")
    (tmp_path / "ok.py").write_text("x = 1\n")
    assert main([str(bad), str(tmp_path / "ok.py")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{bad}:3:5: list 'rows' grows inside the loop at line 2 (append) and is passed on"
        f" after it at line 4; {HINT}",
        "1 accumulation finding(s) in 2 file(s)",
    ]


def test_main_missing_path_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.py")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main([]) == 2  # usage error

"""Tests for the demo tracking store writer (mlruns_assets.demo.store), read back through MLflow.

Most tests read a store with every kind of bad run (``support.bad_runs``): the same good runs as
``write_demo_store`` writes, plus the variants the extraction must fail or skip."""

from __future__ import annotations

import csv
import os
import pickle
import pickletools
import re
import stat
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.entities import ViewType

from mlruns_assets.demo.pickles import SCALAR_NAMES
from mlruns_assets.demo.store import (
    METRIC_STEPS,
    DemoStore,
    log_classification_run,
    tracking_uri_for,
    write_demo_store,
)
from mlruns_assets_tests.support.bad_runs import (
    UNICODE_RUN_NAME,
    BadDemoStore,
    write_bad_demo_store,
)

BOOTSTRAPS, N_TEST, RUNS = 50, 63, 12
N_VARIANT_RUNS = 13  # runs added to Classification by write_bad_demo_store


@pytest.fixture(scope="module", params=["sqlite", "file"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BadDemoStore:
    path = tmp_path_factory.mktemp(f"store_{request.param}")
    return write_bad_demo_store(path, backend=request.param)


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """``write_demo_store`` with its defaults (file backend)."""
    return write_demo_store(tmp_path_factory.mktemp("plain_store"), backend="file")


def _client(store: DemoStore) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(store.tracking_uri)


def _runs(store: DemoStore, experiment: str, view: int = ViewType.ALL) -> list[Any]:
    client = _client(store)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, experiment
    return list(client.search_runs([exp.experiment_id], run_view_type=view, max_results=1000))


def _download(store: DemoStore, run_id: str, artifact_path: str, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=artifact_path,
        dst_path=str(dst),
        tracking_uri=store.tracking_uri,
    )
    return Path(local)


def _load_run_pickle(store: DemoStore, run_id: str, kind: str, tmp_path: Path) -> dict[str, Any]:
    """kind: "metrics" or "dict_arrays"; only for runs this test module wrote itself."""
    client = _client(store)
    (artifact,) = client.list_artifacts(run_id, kind)
    local = _download(store, run_id, artifact.path, tmp_path / run_id)
    with local.open("rb") as fh:
        data: dict[str, Any] = pickle.load(fh)  # safe: test reads its own fixture
    return data


def _subject_map(store: DemoStore) -> dict[str, str]:
    with store.subject_map_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {row["original"]: row["anonymized"] for row in rows}


def _bad_id(store: BadDemoStore, label: str) -> str:
    return next(rid for rid, lab in store.bad_run_ids.items() if lab == label)


def test_classification_runs_counts_names_statuses(store: BadDemoStore) -> None:
    runs = _runs(store, store.classification_experiment)
    assert len(runs) == RUNS + N_VARIANT_RUNS
    by_id = {r.info.run_id: r for r in runs}
    in_experiment = {rid for rid in store.excluded_run_ids if rid in by_id}
    assert set(by_id) == set(store.good_run_ids) | set(store.bad_run_ids) | in_experiment
    assert len(store.good_run_ids) == RUNS + 2
    assert store.single_class_run_id in store.good_run_ids
    assert sorted(store.bad_run_ids.values()) == sorted(
        ["truncated", "malicious", "nan_proba", "label_2", "unmapped_codes", "no_artifacts"]
    )
    for rid in [*store.good_run_ids, *store.bad_run_ids]:
        assert by_id[rid].info.status == "FINISHED"
        assert by_id[rid].info.lifecycle_stage == "active"
        assert set(by_id[rid].data.params) == {
            "anomaly_source",
            "imputation_source",
            "model_name",
            "feature_param",
        }
    reasons = {rid: why for rid, why in store.excluded_run_ids.items() if rid in by_id}
    for rid, why in reasons.items():
        info, run = by_id[rid].info, by_id[rid]
        if why == "deleted":
            assert info.lifecycle_stage == "deleted"
        elif why == "failed":
            assert info.status == "FAILED"
        elif why == "running":
            assert info.status == "RUNNING" and info.end_time is None
        else:
            assert why == "synthetic"
            name = run.info.run_name
            assert name.startswith("__SYNTHETIC_") or run.data.tags.get("is_synthetic") == "true"
    assert sorted(reasons.values()) == ["deleted", "failed", "running", "synthetic", "synthetic"]
    active = _runs(store, store.classification_experiment, ViewType.ACTIVE_ONLY)
    assert len(active) == len(runs) - 1
    names = [by_id[rid].info.run_name for rid in store.good_run_ids]
    assert UNICODE_RUN_NAME in names
    pattern = re.compile(r"^(\w+)_eval-auc__simple1\.0__([\w.-]+)__([\w.-]+)$")
    assert all(pattern.match(n) for n in names if n != UNICODE_RUN_NAME)
    classifiers = {n.split("_")[0] for n in names}
    assert "CatBoost" in classifiers and "CATBOOST" in classifiers  # the case variant exists
    assert classifiers <= {
        "CATBOOST",
        "CatBoost",
        "XGBOOST",
        "LogisticRegression",
        "TabPFN",
        "TabM",
    }


def test_synthetic_experiment(store: BadDemoStore) -> None:
    assert store.synthetic_experiment == "synth_Classification"
    (run,) = _runs(store, store.synthetic_experiment)
    assert store.excluded_run_ids[run.info.run_id] == "synthetic"


def test_metric_history(store: DemoStore) -> None:
    client = _client(store)
    for rid in store.good_run_ids:
        run = client.get_run(rid)
        for key in ("test/AUROC", "test/AUROC_CI_lo", "test/AUROC_CI_hi", "test/Brier"):
            assert key in run.data.metrics
        for key in ("test/AUROC", "train/AUROC", "test/Brier"):
            history = client.get_metric_history(rid, key)
            assert sorted(m.step for m in history) == list(range(METRIC_STEPS))


def test_artifact_layout(store: BadDemoStore) -> None:
    client = _client(store)
    for rid in [*store.good_run_ids, *store.bad_run_ids]:
        name = client.get_run(rid).info.run_name
        if store.bad_run_ids.get(rid) == "no_artifacts":
            assert client.list_artifacts(rid) == []
            continue
        assert sorted(a.path for a in client.list_artifacts(rid)) == ["dict_arrays", "metrics"]
        assert [a.path for a in client.list_artifacts(rid, "metrics")] == [
            f"metrics/metrics_{name}.pickle"
        ]
        assert [a.path for a in client.list_artifacts(rid, "dict_arrays")] == [
            f"dict_arrays/dictArrays_{name}.pickle"
        ]


def _brute_auroc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1][:, None], p[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_metrics_pickle_structure(store: BadDemoStore, tmp_path: Path) -> None:
    client = _client(store)
    for rid in store.good_run_ids:
        if rid == store.single_class_run_id:
            continue
        d = _load_run_pickle(store, rid, "metrics", tmp_path)
        preds = d["metrics_iter"]["test"]["preds"]["arrays"]["predictions"]
        for var in ("y_pred_proba", "y_pred", "label"):
            assert preds[var].shape == (N_TEST, BOOTSTRAPS)
        p = preds["y_pred_proba"]
        assert np.all((p > 0) & (p < 1))
        sub = d["subjectwise_stats"]["test"]
        y = sub["labels"]
        assert sub["subject_code"].shape == y.shape == (N_TEST,)
        assert 0.35 < y.mean() < 0.55 and set(np.unique(y)) == {0, 1}
        np.testing.assert_allclose(sub["preds"]["y_pred_proba"]["mean"], p.mean(axis=1))
        np.testing.assert_allclose(sub["preds"]["y_pred_proba"]["std"], p.std(axis=1))
        np.testing.assert_array_equal(preds["label"], np.repeat(y[:, None], BOOTSTRAPS, axis=1))
        for split in ("train", "test"):
            it, stats = d["metrics_iter"][split]["metrics"], d["metrics_stats"][split]["metrics"]
            for name in SCALAR_NAMES:
                assert len(it["scalars"][name]) == BOOTSTRAPS
                s = stats["scalars"][name]
                assert s["n"] == BOOTSTRAPS and np.asarray(s["ci"]).shape == (2,)
                assert s["ci"][0] <= s["mean"] <= s["ci"][1]
            assert it["arrays"]["AUROC"]["tpr"].shape == (200, BOOTSTRAPS)
            assert it["arrays"]["AUPR"]["precision"].shape == (200, BOOTSTRAPS)
            assert it["arrays"]["calibration_curve"]["prob_true"].shape == (10, BOOTSTRAPS)
            assert stats["arrays"]["AUROC"]["fpr"]["ci"].shape == (2, 200)
            assert stats["arrays"]["calibration_curve"]["prob_pred"]["mean"].shape == (10,)
        aurocs = d["metrics_iter"]["test"]["metrics"]["scalars"]["AUROC"]
        for b in (0, BOOTSTRAPS - 1):
            assert aurocs[b] == pytest.approx(_brute_auroc(y, p[:, b]))
        briers = d["metrics_iter"]["test"]["metrics"]["scalars"]["Brier"]
        assert briers[0] == pytest.approx(float(np.mean((y - p[:, 0]) ** 2)))
        test_stats = d["metrics_stats"]["test"]["metrics"]["scalars"]
        assert 0.6 < test_stats["AUROC"]["mean"] < 1.0
        last = max(client.get_metric_history(rid, "test/AUROC"), key=lambda m: m.step)
        assert last.value == pytest.approx(test_stats["AUROC"]["mean"])
        arrays = _load_run_pickle(store, rid, "dict_arrays", tmp_path / "arrays")
        np.testing.assert_array_equal(arrays["subject_codes_test"], sub["subject_code"])
        assert arrays["x_test"].shape[0] == N_TEST and arrays["x_train"].shape[0] > N_TEST
        assert "y_pred_proba_mean" not in arrays


def test_single_class_run_is_valid_but_undefined_auroc(store: BadDemoStore, tmp_path: Path) -> None:
    assert store.single_class_run_id is not None
    d = _load_run_pickle(store, store.single_class_run_id, "metrics", tmp_path)
    labels = d["subjectwise_stats"]["test"]["labels"]
    assert len(set(labels.tolist())) == 1
    auroc = d["metrics_stats"]["test"]["metrics"]["scalars"]["AUROC"]
    assert auroc["n"] == 0 and np.isnan(auroc["mean"]) and np.isnan(auroc["ci"]).all()
    assert d["metrics_iter"]["test"]["preds"]["arrays"]["predictions"]["y_pred_proba"].shape == (
        labels.size,
        BOOTSTRAPS,
    )


def test_corrupt_runs(store: BadDemoStore, tmp_path: Path) -> None:
    nan = _load_run_pickle(store, _bad_id(store, "nan_proba"), "metrics", tmp_path)
    assert np.isnan(nan["subjectwise_stats"]["test"]["preds"]["y_pred_proba"]["mean"]).any()
    label2 = _load_run_pickle(store, _bad_id(store, "label_2"), "metrics", tmp_path)
    assert 2 in label2["subjectwise_stats"]["test"]["labels"]
    # Truncated: parse opcodes only (never executes anything); the stream ends early.
    rid = _bad_id(store, "truncated")
    (artifact,) = _client(store).list_artifacts(rid, "metrics")
    data = _download(store, rid, artifact.path, tmp_path / "trunc").read_bytes()
    with pytest.raises(ValueError):
        list(pickletools.genops(data))


def test_malicious_pickle_was_not_executed(store: BadDemoStore, tmp_path: Path) -> None:
    assert store.pwned_marker is not None and not store.pwned_marker.exists()
    rid = _bad_id(store, "malicious")
    (artifact,) = _client(store).list_artifacts(rid, "metrics")
    raw = _download(store, rid, artifact.path, tmp_path).read_bytes()  # bytes only: never loaded
    assert b"system" in raw and b"PWNED" in raw
    globals_seen = [arg for op, arg, _ in pickletools.genops(raw) if op.name == "SHORT_BINUNICODE"]
    assert "system" in globals_seen
    assert not store.pwned_marker.exists()


def test_subject_map(store: BadDemoStore, tmp_path: Path) -> None:
    mapping = _subject_map(store)
    store_root = Path(store.tracking_uri.removeprefix("sqlite:///")).parent
    assert store.subject_map_path.parent == store_root
    assert not store.subject_map_path.is_relative_to(store_root / "artifacts")
    assert not store.subject_map_path.is_relative_to(store_root / "mlruns")
    assert all(re.fullmatch(r"PLR\d{4}", code) for code in mapping)
    for prefix in ("H", "G"):
        originals = sorted(o for o, a in mapping.items() if a.startswith(prefix))
        assert [mapping[o] for o in originals] == [
            f"{prefix}{i:03d}" for i in range(1, 1 + len(originals))
        ]
    seen: set[str] = set()
    loadable = [*store.good_run_ids, _bad_id(store, "nan_proba"), _bad_id(store, "label_2")]
    for rid in loadable:
        sub = _load_run_pickle(store, rid, "metrics", tmp_path)["subjectwise_stats"]["test"]
        for code, label in zip(sub["subject_code"].tolist(), sub["labels"].tolist(), strict=True):
            if label in (0, 1):
                assert mapping[code][0] == "HG"[label]
            seen.add(code)
        arrays = _load_run_pickle(store, rid, "dict_arrays", tmp_path / "a")
        seen.update(arrays["subject_codes_train"].tolist())
    unmapped = _load_run_pickle(store, _bad_id(store, "unmapped_codes"), "metrics", tmp_path)
    unmapped_codes = set(unmapped["subjectwise_stats"]["test"]["subject_code"].tolist())
    assert unmapped_codes and not unmapped_codes & set(mapping)
    assert seen == set(mapping)


def test_imputation_experiment(store: DemoStore, tmp_path: Path) -> None:
    runs = _runs(store, store.imputation_experiment)
    assert {r.info.run_id for r in runs} == set(store.imputation_run_ids) and len(runs) == 2
    mapping = _subject_map(store)
    for run in runs:
        imputation, outlier = run.info.run_name.split("__")
        assert run.data.params == {"imputation_source": imputation, "anomaly_source": outlier}
        (artifact,) = _client(store).list_artifacts(run.info.run_id, "imputation")
        assert artifact.path == f"imputation/imputation_{imputation}.pickle"
        local = _download(store, run.info.run_id, artifact.path, tmp_path / run.info.run_id)
        with local.open("rb") as fh:
            d = pickle.load(fh)  # safe: test reads its own fixture
        total = 0
        for split in ("train", "test"):
            df = d["source_data"]["df"][split]
            codes, t = df["metadata"]["subject_code"], df["time"]["time"]
            mean = d["model_artifacts"]["imputation"][split]["imputation_dict"]["imputation"][
                "mean"
            ]
            n = codes.shape[0]
            assert codes.shape == t.shape == (n, 200) and mean.shape == (n, 200, 1)
            assert set(codes[:, 0].tolist()) <= set(mapping)
            assert np.isfinite(mean).all() and np.all(np.diff(t, axis=1) > 0)
            total += n
        assert total == 40 and d["source_data"]["df"]["train"]["time"]["time"].shape[0] == 28


def test_defaults_without_bad_runs(plain_store: DemoStore, tmp_path: Path) -> None:
    root = plain_store.subject_map_path.parent
    assert plain_store.tracking_uri == str(root / "mlruns")
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert type(plain_store) is DemoStore and len(plain_store.good_run_ids) == RUNS
    experiments = _client(plain_store).search_experiments(view_type=ViewType.ALL)
    assert sorted(e.name for e in experiments) == ["Classification", "Default", "Imputation"]
    runs = _runs(plain_store, "Classification")
    assert {r.info.run_id for r in runs} == set(plain_store.good_run_ids)
    assert all(r.info.status == "FINISHED" and not r.data.tags.get("is_synthetic") for r in runs)
    assert not (root / "PWNED").exists()
    assert tracking_uri_for(tmp_path, "sqlite") == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    with pytest.raises(ValueError):
        write_demo_store(tmp_path / "too_many", backend="file", runs=200)


def test_bad_store_adds_to_the_default_store(store: BadDemoStore, plain_store: DemoStore) -> None:
    """Same seed, same good runs and subject map: the variants come on top of them."""

    def names(s: DemoStore, run_ids: list[str]) -> list[str]:
        return [_client(s).get_run(rid).info.run_name for rid in run_ids]

    assert names(store, store.good_run_ids[:RUNS]) == names(plain_store, plain_store.good_run_ids)
    assert names(store, store.imputation_run_ids) == names(
        plain_store, plain_store.imputation_run_ids
    )
    assert store.subject_map_path.read_text() == plain_store.subject_map_path.read_text()


def test_subject_map_is_private(plain_store: DemoStore, tmp_path: Path) -> None:
    assert stat.S_IMODE(plain_store.subject_map_path.stat().st_mode) == 0o600
    stale = tmp_path / "subject_map.csv"  # a world-readable map left by an earlier write
    stale.write_text("original,anonymized\n")
    stale.chmod(0o644)
    store = write_demo_store(tmp_path, runs=1, bootstraps=2, imputation_runs=0)
    assert store.subject_map_path == stale
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600 and len(stale.read_text().splitlines()) > 1


def test_log_classification_run_reusable(tmp_path: Path) -> None:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    uri = tracking_uri_for(tmp_path, "file")
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("CaseStudy")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    proba = np.clip(0.3 + 0.4 * y[:, None] + rng.normal(0, 0.15, (120, 5)), 0.01, 0.99)
    codes = np.array([f"CS{i:04d}" for i in range(120)])
    name = "LogisticRegression_eval-auc__simple1.0__linear__LOF"
    rid = log_classification_run(client, exp_id, name, codes, y, proba)
    run = client.get_run(rid)
    assert run.info.status == "FINISHED" and run.info.run_name == name
    assert run.data.params["model_name"] == "LogisticRegression"
    assert run.data.params["anomaly_source"] == "LOF"
    store = DemoStore(tracking_uri=uri, subject_map_path=tmp_path / "unused.csv")
    d = _load_run_pickle(store, rid, "metrics", tmp_path)
    stats = d["metrics_stats"]["test"]["metrics"]["scalars"]
    expected = np.mean([_brute_auroc(y, proba[:, b]) for b in range(5)])
    assert stats["AUROC"]["mean"] == pytest.approx(expected)
    assert stats["Brier"]["mean"] == pytest.approx(float(np.mean((y[:, None] - proba) ** 2)))
    arrays = _load_run_pickle(store, rid, "dict_arrays", tmp_path / "a")
    assert arrays["x_train"].shape == (0, len(arrays["feature_names"]))
    with pytest.raises(ValueError):
        log_classification_run(client, exp_id, name, codes, y, proba[:10])

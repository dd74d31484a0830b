"""Tests for the allow-list unpickler.

Fixtures are created with ``pickle.dumps`` or hand-written opcodes; nothing in this file
hands untrusted bytes to plain ``pickle.load``/``pickle.loads``.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlruns_assets.source.safe_pickle import (
    ArtifactError,
    UnsafeArtifactError,
    load_untrusted_pickle,
)

PROTOCOLS = sorted({2, 3, 4, 5, pickle.HIGHEST_PROTOCOL})


def _object_array() -> np.ndarray:
    arr = np.empty(5, dtype=object)
    arr[:] = [{"a": 1}, [1, 2], "text", None, np.arange(2)]
    return arr


def realistic_artifact() -> dict[str, Any]:
    """Shaped like the per-subject decomposition pickles the extraction reads."""
    rng = np.random.default_rng(0)
    denoised = rng.standard_normal((3, 50))
    denoised[0, 3] = np.nan
    return {
        "subject_ids": np.array(["PLR0001", "PLR0002", "PLR0003"]),
        "signals": {
            "raw": rng.random((3, 50)).astype(np.float32),
            "denoised": denoised,
            "half": np.ones(4, dtype=np.float16),
            "mask": rng.random(50) > 0.5,
            "labels": np.arange(-3, 3, dtype=np.int8),
            "counts": np.arange(6, dtype=np.uint64),
            "codes": np.arange(4, dtype=">i4"),
            "spectrum": np.array([1 + 2j, -3j], dtype=np.complex128),
            "timestamps": np.array(
                ["2026-01-31T00:00", "2026-02-01T12:30"], dtype="datetime64[ns]"
            ),
            "durations": np.array([1, 2], dtype="timedelta64[s]"),
            "fortran": np.asfortranarray(rng.random((4, 3))),
            "strided": np.arange(20.0)[::3],
            "zero_d": np.array(3.5),
            "empty": np.zeros((0, 3)),
            "raw_bytes": np.array([b"ab", b"c"]),
        },
        "metrics": {
            "auroc": np.float64(0.91),
            "n_subjects": np.int64(507),
            "converged": np.bool_(True),
            "loss": np.float32(1.5),
            "name": np.str_("mixture"),
        },
        "structured": np.array(
            [((1, 2), 3.0, b"x", [1.0, 2.0, 3.0])],
            dtype=[
                ("p", [("x", "i2"), ("y", "i2")]),
                ("q", "f4"),
                ("tag", "S3"),
                ("vec", "f8", (3,)),
            ],
        ),
        "dtype": np.dtype([("a", "<i4"), ("b", ">f8")]),
        "params": OrderedDict([("lr", 1e-3), ("layers", [64, 64])]),
        "tags": {"baseline", "plr"},
        "frozen": frozenset({1, 2}),
        "z": 1 + 2j,
        "blob": b"\x00\xffbytes",
        "empty_blob": b"",
        "buffer": bytearray(b"xy"),
        "tuple": (1, "a", None, True, 2.5),
        "big_int": 10**40,
        "nested": [[1, 2], [np.arange(3), {"deep": np.eye(2)}]],
        "objects": _object_array(),
    }


def assert_same(expected: Any, actual: Any) -> None:
    """Deep equality that also checks types and dtypes."""
    assert type(actual) is type(expected)
    if isinstance(expected, np.ndarray):
        # numpy itself reloads '>i4' as native int32 below protocol 5: ignore byte order.
        assert actual.dtype.newbyteorder("=") == expected.dtype.newbyteorder("=")
        assert actual.shape == expected.shape
        if expected.dtype == object:
            for want, got in zip(expected.ravel(), actual.ravel(), strict=True):
                assert_same(want, got)
        else:
            np.testing.assert_array_equal(actual, expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected)
        for want, got in zip(expected, actual, strict=True):
            assert_same(want, got)
    else:
        assert actual == expected


def write(tmp_path: Path, data: bytes, name: str = "artifact.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def call_pickle(module: str, name: str, args: tuple[Any, ...]) -> bytes:
    """Protocol-2 bytes for ``module.name(*args)``, whatever the callable is."""
    body = pickle.dumps(args, protocol=2)[2:-1]  # strip PROTO header and STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body + b"R."


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_round_trip_realistic_artifact(tmp_path: Path, protocol: int) -> None:
    expected = realistic_artifact()
    path = write(tmp_path, pickle.dumps(expected, protocol=protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no numpy.core DeprecationWarning
        loaded = load_untrusted_pickle(path)
    assert_same(expected, loaded)


def test_accepts_numpy_1x_module_names(tmp_path: Path) -> None:
    expected = {"a": np.arange(4.0), "s": np.float64(2.0)}
    data = pickle.dumps(expected, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data
    assert_same(expected, load_untrusted_pickle(write(tmp_path, data)))


def test_accepts_path_string_and_display_name(tmp_path: Path) -> None:
    path = write(tmp_path, pickle.dumps([1, 2]))
    assert load_untrusted_pickle(str(path), display_name="run/abc/x.pkl") == [1, 2]


class _Reduce:
    """Pickles as ``func(*args)`` via ``__reduce__``."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


@pytest.mark.parametrize(
    ("make", "qualname"),
    [
        (lambda m: _Reduce(os.system, f"touch {m}"), f"{os.system.__module__}.system"),
        (lambda m: _Reduce(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
        (lambda m: _Reduce(builtins.eval, f"open({str(m)!r}, 'w')"), "builtins.eval"),
        (lambda m: _Reduce(builtins.exec, f"open({str(m)!r}, 'w')"), "builtins.exec"),
    ],
    ids=["os.system", "subprocess.Popen", "eval", "exec"],
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refuses_code_execution_without_side_effect(
    tmp_path: Path, make: Any, qualname: str, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    # Hide the payload inside an otherwise valid artifact.
    payload = {"signals": np.arange(3.0), "evil": [make(marker)]}
    # fix_imports=False keeps protocol 2 from renaming e.g. subprocess to Python 2's commands.
    path = write(tmp_path, pickle.dumps(payload, protocol=protocol, fix_imports=False))
    with pytest.raises(UnsafeArtifactError) as info:
        load_untrusted_pickle(path, display_name="runs/r1/artifacts/x.pkl")
    assert str(info.value) == f"refused to unpickle {qualname} in runs/r1/artifacts/x.pkl"
    assert not marker.exists()


def test_refuses_os_system_spelled_as_os(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path, call_pickle("os", "system", (f"touch {marker}",)))
    with pytest.raises(UnsafeArtifactError) as info:
        load_untrusted_pickle(path)
    assert str(info.value) == f"refused to unpickle os.system in {path}"
    assert not marker.exists()


def test_refusal_names_the_global_as_spelled_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, pickle.dumps(_Reduce(subprocess.Popen, ["true"]), protocol=2))
    with pytest.raises(UnsafeArtifactError, match=r"^refused to unpickle commands\.Popen in "):
        load_untrusted_pickle(path)


def test_refuses_print_reduce(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pickle.dumps(_Reduce(print, "side effect")))
    with pytest.raises(UnsafeArtifactError, match=r"^refused to unpickle builtins\.print in "):
        load_untrusted_pickle(path)
    assert capsys.readouterr().out == ""


def test_refuses_evil_element_of_object_array(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    arr = np.empty(2, dtype=object)
    arr[:] = [1, _Reduce(os.system, f"touch {marker}")]
    path = write(tmp_path, pickle.dumps(arr, protocol=5))
    with pytest.raises(UnsafeArtifactError):
        load_untrusted_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("numpy", "load", ("x.npy",)),
        ("numpy.testing._private.utils", "runstring", ("1", {})),
        ("numpy", "dtype.__new__", ()),  # dotted lookups are not followed
        ("copyreg", "_reconstructor", ()),
        ("builtins", "getattr", ()),
        ("__builtin__", "range", (3,)),
    ],
)
def test_refuses_globals_outside_allow_list(
    tmp_path: Path, module: str, name: str, args: tuple[Any, ...]
) -> None:
    path = write(tmp_path, call_pickle(module, name, args))
    with pytest.raises(UnsafeArtifactError) as info:
        load_untrusted_pickle(path, display_name="a.pkl")
    assert str(info.value) == f"refused to unpickle {module}.{name} in a.pkl"


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("builtins", "bytearray", (10**12,)),  # memory amplification
        ("__builtin__", "bytes", (10**12,)),
        ("_codecs", "encode", ("x", "zlib")),
        ("numpy", "ndarray", ((10**12,),)),
        ("numpy._core.multiarray", "_reconstruct", (np.ndarray, (10**12,), b"b")),
        ("numpy._core.multiarray", "scalar", (np.dtype("V100000000"),)),
    ],
)
def test_refuses_abuse_of_allowed_callables(
    tmp_path: Path, module: str, name: str, args: tuple[Any, ...]
) -> None:
    path = write(tmp_path, call_pickle(module, name, args))
    with pytest.raises(UnsafeArtifactError, match=r"^refused to unpickle .* in a\.pkl: "):
        load_untrusted_pickle(path, display_name="a.pkl")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("_codecs", "encode"),
    ],
)
def test_build_cannot_modify_allowed_globals(tmp_path: Path, module: str, name: str) -> None:
    """BUILD setattr()s on its target: it must not reach numpy's functions or our guards."""
    from numpy._core import numeric

    frombuffer = numeric.__dict__["_frombuffer"]
    before = frombuffer.__defaults__
    state = pickle.dumps((None, {"__defaults__": (1,), "x": 1}), protocol=2)[2:-1]
    path = write(tmp_path, f"\x80\x02c{module}\n{name}\n".encode("latin-1") + state + b"b.")
    with pytest.raises(ArtifactError) as info:
        load_untrusted_pickle(path)
    assert frombuffer.__defaults__ == before
    if module == "numpy._core.numeric":
        assert str(info.value).endswith(": the pickle tried to modify it")


def _assert_corrupt(path: Path, name: str) -> ArtifactError:
    with pytest.raises(ArtifactError) as info:
        load_untrusted_pickle(path, display_name=name)
    message = str(info.value)
    assert type(info.value) is ArtifactError
    assert message.startswith(f"corrupt or truncated pickle in {name}: ")
    assert "\n" not in message and "Traceback" not in message
    return info.value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_truncated_file_is_one_line_artifact_error(tmp_path: Path, protocol: int) -> None:
    data = pickle.dumps(realistic_artifact(), protocol=protocol)
    path = write(tmp_path, data[: len(data) // 2])
    _assert_corrupt(path, "runs/r1/artifacts/x.pkl")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_truncation_point_is_an_artifact_error(tmp_path: Path, protocol: int) -> None:
    data = pickle.dumps(realistic_artifact(), protocol=protocol)
    for cut in range(0, len(data), max(1, len(data) // 97)):
        _assert_corrupt(write(tmp_path, data[:cut]), f"cut-{cut}")


def test_garbage_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(20):
        path = write(tmp_path, b"\x80\x04" + rng.bytes(64), f"garbage{i}.pkl")
        with pytest.raises(ArtifactError) as info:
            load_untrusted_pickle(path, display_name="g.pkl")
        assert "\n" not in str(info.value)
    _assert_corrupt(write(tmp_path, b"this is not a pickle\n" * 3), "text.pkl")


def test_empty_file(tmp_path: Path) -> None:
    error = _assert_corrupt(write(tmp_path, b""), "empty.pkl")
    assert "EOFError" in str(error)


def test_trailing_data_is_corrupt(tmp_path: Path) -> None:
    data = pickle.dumps({"a": 1}) + pickle.dumps({"b": 2})
    error = _assert_corrupt(write(tmp_path, data), "two.pkl")
    assert "trailing data" in str(error)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        load_untrusted_pickle(tmp_path / "nope.pkl", display_name="runs/r1/artifacts/nope.pkl")
    assert str(info.value) == "missing artifact runs/r1/artifacts/nope.pkl"
    with pytest.raises(ArtifactError, match=r"^missing artifact .*nope\.pkl$"):
        load_untrusted_pickle(tmp_path / "nope.pkl")


def test_directory_is_unreadable_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^cannot read artifact d\.pkl: "):
        load_untrusted_pickle(tmp_path, display_name="d.pkl")


def test_error_hierarchy() -> None:
    assert issubclass(UnsafeArtifactError, ArtifactError)
    assert issubclass(ArtifactError, Exception)

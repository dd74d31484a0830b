"""Load MLflow pickle artifacts without letting them run code.

``pickle.load`` is not a parser: a pickle is a small program, and its ``GLOBAL`` /
``STACK_GLOBAL`` + ``REDUCE`` opcodes import any importable callable and call it with
arguments chosen by whoever wrote the file (``os.system("...")`` is one line of pickle).
MLflow artifacts come from arbitrary runs, so they are untrusted input.

:func:`load_untrusted_pickle` uses an unpickler whose ``find_class`` only resolves an
explicit allow-list: what numpy 2.x (and numpy 1.x, via the ``numpy.core`` names) emits
for arrays, dtypes and numpy scalars with pickle protocols 2-5, plus the few builtins that
plain Python containers need (``set``/``frozenset`` before protocol 4, ``complex``,
``bytearray``, ``collections.OrderedDict``).  Dicts, lists, tuples, str, bytes, int,
float, bool and None have their own opcodes and need no global.  Every other global is
refused *before* it is imported, so nothing from the file ever runs.

The allowed callables are additionally guarded against being abused as memory
amplifiers (``bytearray(10**12)``, ``_reconstruct(ndarray, (10**12,), ...)``): they only
accept the argument shapes that ``pickle.dumps`` produces, and cannot be modified by the
``BUILD`` opcode (which would otherwise ``setattr`` on numpy's own functions).  Object
arrays are fine: their elements go through the same ``find_class``.

Checked empirically with numpy 2.4 (protocol 2 adds ``_codecs.encode`` and
``__builtin__.*`` names; protocol 5 adds ``numpy._core.numeric._frombuffer``).  The
allow-list deliberately omits ``range`` and ``slice``, which no data artifact needs.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any, NoReturn

import numpy as np

from mlruns_assets.runtime.errors import one_line
from mlruns_assets.runtime.progress import ProgressReader

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

__all__ = ["ArtifactError", "UnsafeArtifactError", "load_untrusted_pickle"]


class ArtifactError(Exception):
    """An MLflow artifact is missing, unreadable or not a valid pickle."""


class UnsafeArtifactError(ArtifactError):
    """An artifact asked to import or call something outside the allow-list."""


class _Refused(Exception):
    """Raised by an argument guard; turned into :class:`UnsafeArtifactError` by the loader."""

    def __init__(self, reason: str, qualname: str = "") -> None:
        super().__init__(reason, qualname)
        self.reason = reason
        self.qualname = qualname


class _Guarded:
    """An allowed callable as handed to the unpickler.

    Plain functions would not do: the ``BUILD`` opcode ``setattr``s on whatever
    ``find_class`` returned, so handing out numpy's own ``_frombuffer`` would let a file
    rewrite its ``__defaults__`` for the whole process.  Instances refuse ``BUILD`` and
    attribute assignment (the C types on the allow-list are immutable already), and
    name the global as spelled in the file when an argument guard refuses a call.
    """

    __slots__ = ("_func", "qualname")
    _func: Callable[..., Any]
    qualname: str

    def __init__(self, qualname: str, func: Callable[..., Any]) -> None:
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "_func", func)

    def __call__(self, *args: object) -> Any:
        try:
            return self._func(*args)
        except _Refused as exc:
            exc.qualname = exc.qualname or self.qualname
            raise

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise _Refused("the pickle tried to modify it", self.qualname)

    def __setstate__(self, state: object) -> NoReturn:
        raise _Refused("the pickle tried to modify it", self.qualname)

    def __repr__(self) -> str:
        return f"<restricted {self.qualname}>"


_NP_RECONSTRUCT: Callable[..., Any] = _multiarray.__dict__["_reconstruct"]
_NP_SCALAR: Callable[..., Any] = _multiarray.__dict__["scalar"]
_NP_FROMBUFFER: Callable[..., Any] = _numeric.__dict__["_frombuffer"]


def _ndarray_call(*args: object) -> NoReturn:
    """numpy only passes the class to ``_reconstruct``; ``ndarray((10**12,))`` would allocate."""
    raise _Refused("direct call of the array constructor")


#: Stands in for ``numpy.ndarray``; ``_reconstruct`` swaps the real class back in.
_NDARRAY = _Guarded("numpy.ndarray", _ndarray_call)


def _reconstruct(subtype: object, shape: object, dtype: object) -> Any:
    """numpy's ``_reconstruct`` for plain ndarrays with the empty placeholder shape only."""
    if subtype is not _NDARRAY:
        raise _Refused("not a plain numpy.ndarray")
    if not isinstance(shape, tuple) or any(not isinstance(n, int) or n != 0 for n in shape):
        # ndarray.__reduce__ always emits shape (0,); the real shape and data arrive in
        # __setstate__, which checks the data length against the shape.
        raise _Refused("non-empty placeholder shape")
    return _NP_RECONSTRUCT(np.ndarray, shape, dtype)


def _scalar(*args: object) -> Any:
    """numpy scalar from ``(dtype, raw bytes)``; the one-argument form zero-fills itemsize."""
    if len(args) != 2:
        raise _Refused("expected (dtype, data)")
    return _NP_SCALAR(*args)


def _codecs_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 bytes come as ``_codecs.encode(str, 'latin1')``; no other codec runs."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Refused(f"encoding {encoding!r} is not latin1")
    return obj.encode("latin-1")


def _bytes_guard(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``bytes``/``bytearray`` so that ``bytearray(10**12)`` cannot allocate."""

    def build(*args: object) -> Any:
        if len(args) > 2 or (args and not isinstance(args[0], str | bytes | bytearray)):
            raise _Refused("only built from str or bytes")
        return factory(*args)

    return build


_NUMPY_CORE: dict[str, dict[str, Callable[..., Any]]] = {
    "multiarray": {"_reconstruct": _reconstruct, "scalar": _scalar},
    "numeric": {"_frombuffer": _NP_FROMBUFFER},  # protocol 5
}
_BUILTIN_FUNCS: dict[str, Callable[..., Any]] = {
    "bytearray": _bytes_guard(bytearray),  # protocols 2-4
    "bytes": _bytes_guard(bytes),  # protocol 2 spells b"" as bytes()
}
#: Immutable C types, safe to hand out as they are.
_BUILTIN_TYPES: dict[str, type] = {
    "set": set,  # protocols 2-3 (4+ have EMPTY_SET / FROZENSET opcodes)
    "frozenset": frozenset,
    "complex": complex,
}

#: (module, name) -> object handed to the unpickler.  Nothing else is ever imported.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _Guarded("_codecs.encode", _codecs_encode),
    ("collections", "OrderedDict"): OrderedDict,
    **{
        (f"{package}.{module}", name): _Guarded(f"{package}.{module}.{name}", func)
        for package in ("numpy._core", "numpy.core")  # numpy 2.x and 1.x pickles
        for module, funcs in _NUMPY_CORE.items()
        for name, func in funcs.items()
    },
    **{
        (module, name): _Guarded(f"{module}.{name}", func)
        for module in ("builtins", "__builtin__")
        for name, func in _BUILTIN_FUNCS.items()
    },
    **{
        (module, name): cls
        for module in ("builtins", "__builtin__")
        for name, cls in _BUILTIN_TYPES.items()
    },
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: IO[bytes] | ProgressReader, display_name: str) -> None:
        super().__init__(file)
        self.display_name = display_name

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeArtifactError(
                f"refused to unpickle {module}.{name} in {self.display_name}"
            ) from None


def _load(handle: IO[bytes] | ProgressReader, name: str) -> object:
    """Run the restricted unpickler, turning every failure into a one-line error."""
    try:
        result = RestrictedUnpickler(handle, name).load()
        trailing = handle.read(1)
    except UnsafeArtifactError:
        raise
    except _Refused as exc:
        raise UnsafeArtifactError(
            f"refused to unpickle {exc.qualname} in {name}: {exc.reason}"
        ) from None
    except MemoryError:  # usually a corrupt length field asking for gigabytes
        raise ArtifactError(
            f"corrupt or truncated pickle in {name}: MemoryError: the pickle asks for more"
            " memory than is available"
        ) from None
    except OSError as exc:
        raise ArtifactError(
            f"cannot read artifact {name}: {one_line(exc, with_type=True)}"
        ) from None
    except Exception as exc:  # EOFError, UnpicklingError, ValueError, TypeError, ...
        raise ArtifactError(
            f"corrupt or truncated pickle in {name}: {one_line(exc, with_type=True)}"
        ) from None
    if trailing:
        raise ArtifactError(
            f"corrupt or truncated pickle in {name}: trailing data after the end of the pickle"
        )
    return result


def load_untrusted_pickle(
    path: str | os.PathLike[str],
    *,
    display_name: str | None = None,
    on_read: Callable[[int], None] | None = None,
) -> object:
    """Unpickle an untrusted artifact, refusing anything that could run code.

    ``display_name`` (e.g. the artifact path inside the MLflow run) replaces the local
    path in error messages.  Raises :class:`UnsafeArtifactError` for a refused global
    (``refused to unpickle <module>.<name> in <artifact>``) and :class:`ArtifactError`
    for a missing, unreadable, truncated or corrupt file.  ``on_read(bytes_so_far)`` is
    called as the read goes on (``runtime.progress.ProgressReader``: at most every second,
    only while bytes arrive); it sees the bytes, never the objects.
    """
    name = display_name if display_name is not None else os.fspath(path)
    try:
        # Buffered reader: the unpickler pulls frames from it, the file is never read whole.
        with open(path, "rb") as handle:
            if on_read is None:
                return _load(handle, name)
            return _load(ProgressReader(handle, on_read), name)
    except FileNotFoundError:  # only open() can raise OSError here; _load converts its own
        raise ArtifactError(f"missing artifact {name}") from None
    except OSError as exc:
        raise ArtifactError(
            f"cannot read artifact {name}: {one_line(exc, with_type=True)}"
        ) from None

"""A restricted unpickler that admits numpy array reconstruction only.

The I3D weights ship as a pickle of plain numpy arrays. A plain `pickle.load` on a file from outside can run any
callable it names; this loader resolves exactly three globals (ndarray, its reconstructor, dtype) and refuses
object dtypes, so the worst a hostile file can do is fail to load.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused: object dtype {dtype!r} in a weights pickle")
    return dtype


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy array reconstruction; any other global raises UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays may be unpickled") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused: persistent ids")


def _check_tree(obj: Any, path: str = "") -> None:
    """Containers of str keys and numeric ndarrays only."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise pickle.UnpicklingError(f"refused: non-str key {key!r} at {path or '/'}")
            _check_tree(value, f"{path}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_tree(value, f"{path}/{i}")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError(f"refused: object array at {path}")
    elif not isinstance(obj, (int, float, bool, str, type(None))):
        raise pickle.UnpicklingError(f"refused: {type(obj).__name__} at {path}")


def load_numpy_pickle(source: str | Path | bytes) -> Any:
    """Unpickle a tree of dicts/lists of numpy arrays from a path or bytes, admitting nothing else."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    _check_tree(obj)
    return obj

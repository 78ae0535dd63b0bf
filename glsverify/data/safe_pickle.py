"""A restricted unpickler for the official CIFAR-10 python batches.

Those batches are pickles (Python 2, protocol 2) of a dict of byte strings, lists, ints and one
uint8 numpy array. An ordinary ``pickle.load`` would run any callable the file names, so this
unpickler resolves only the four globals numpy needs to rebuild an array and refuses every other
global (``os.system``, ``builtins.eval``, ...) with a :class:`DatasetError`. Object arrays are
refused too, since their elements could only come from the same restricted stream but they have
no business in an image batch.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from glsverify.errors import DatasetError

try:  # numpy >= 2 keeps the implementation in numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]


def _dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` that refuses the object dtype."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise DatasetError("pickle asks for an object-dtype numpy array, which is not allowed")
    return dtype


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose only reachable globals are :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(f"refusing to load global {module}.{name}") from None


def restricted_loads(data: bytes, where: str) -> Any:
    """Unpickle ``data`` (byte strings stay bytes); any failure is a DatasetError naming ``where``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DatasetError as error:
        raise DatasetError(f"{where}: {error}") from None
    except Exception as error:  # a corrupt pickle can raise nearly anything
        raise DatasetError(f"{where}: not a readable pickle ({type(error).__name__}: {error})") from None

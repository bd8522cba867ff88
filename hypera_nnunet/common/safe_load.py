"""Loading files that cross between users without running their code.

``torch.load(weights_only=True)`` unpickles only tensors, containers and primitive types; numpy arrays,
dtypes and scalars (replay buffers, normalisers) are allowed by name. Anything else in the file (a
crafted ``__reduce__``) is refused before it runs, with one error naming the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np

from hypera_nnunet.errors import HyperaError


def _numpy_globals() -> list:
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                          "uint8", "uint16", "uint32", "uint64", "bool")]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def load_torch_file(path: str | os.PathLike, what: str = "file"):
    """``torch.load`` with ``weights_only=True`` (plus numpy arrays) on the CPU.

    :param what: what the file is, for the error message (e.g. "HYPERA policies").
    :raises HyperaError: the file is missing, damaged, or holds objects that would run code to load."""
    import torch

    if not os.path.isfile(path):
        raise HyperaError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]
        raise HyperaError(f"{what} {path} holds objects that would run code when loaded; refused ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise HyperaError(f"{what} {path} is damaged or not a torch file ({str(e).splitlines()[0][:160]})") from None

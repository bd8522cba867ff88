"""Refinement's starting point: nnU-Net's own postprocessing (issue 17, item 1).

``nnUNetv2_determine_postprocessing`` (and ``nnUNetv2_find_best_configuration``) write a ``postprocessing.pkl``
of ``(functions, kwargs)``, applied in order as ``segmentation = fn(segmentation, **kwargs)``. Given to
``refine fit --postprocessing PKL``, that chain becomes the refiner's *start*: every case is postprocessed by it
before the refinement steps are searched, scored and accepted, and ``refine apply`` applies it first too, so the
identity of every class means "nnU-Net's postprocessing", never less.

The pickle is read with a restricted unpickler that only resolves the postprocessing functions listed in
:data:`ALLOWED_FUNCTIONS` (nnU-Net's keep-largest and this package's two segmentation-only steps) and numpy
scalars; any other global is refused with the file named, so a damaged or hostile pickle runs no code. In the
refiner (JSON) the chain is stored by the functions' import paths and JSON-ready keyword arguments.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypera_nnunet.errors import HyperaError

NNUNET_KEEP_LARGEST = ("nnunetv2.postprocessing.remove_connected_components",
                       "remove_all_but_largest_component_from_segmentation")
#: (module, name) of the functions a start chain may call
ALLOWED_FUNCTIONS = frozenset({
    NNUNET_KEEP_LARGEST,
    ("hypera_nnunet.refine.postprocessing", "refine_shape"),
    ("hypera_nnunet.refine.postprocessing", "refine_objects"),
})
_NUMPY_SCALARS = frozenset({("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                            ("numpy._core.multiarray", "scalar")})


@dataclass(frozen=True)
class StartStep:
    """One function of nnU-Net's postprocessing chain and its keyword arguments (JSON-ready)."""

    module: str
    name: str
    kwargs: dict

    def to_dict(self) -> dict:
        return {"function": f"{self.module}.{self.name}", "kwargs": self.kwargs}

    @classmethod
    def from_dict(cls, d: dict, source: str = "refiner") -> StartStep:
        try:
            module, _, name = str(d["function"]).rpartition(".")
            kwargs = dict(d.get("kwargs") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise HyperaError(f"{source}: a start step is not {{function, kwargs}} ({type(e).__name__}: {e})") from None
        if (module, name) not in ALLOWED_FUNCTIONS:
            raise HyperaError(f"{source}: start step {module}.{name} is not an allowed postprocessing function "
                              f"({', '.join(sorted(m + '.' + n for m, n in ALLOWED_FUNCTIONS))})")
        return cls(module, name, kwargs)

    def function(self):
        return getattr(importlib.import_module(self.module), self.name)


def _jsonable(v):
    """Keyword values as JSON keeps them: numpy scalars to Python numbers, tuples (nnU-Net's regions) to lists."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _call_kwargs(step: StartStep) -> dict:
    """The keyword arguments as the function expects them: nnU-Net's ``labels_or_regions`` is a list whose
    items are labels (int) or regions (tuples of labels), and JSON turned the tuples into lists."""
    kw = dict(step.kwargs)
    if (step.module, step.name) == NNUNET_KEEP_LARGEST and isinstance(kw.get("labels_or_regions"), list):
        kw["labels_or_regions"] = [tuple(x) if isinstance(x, list) else x for x in kw["labels_or_regions"]]
    return kw


class _PostprocessingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_FUNCTIONS | _NUMPY_SCALARS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, not one of the postprocessing functions "
                                         "a refinement may start from (not loaded: unpickling it could run code)")
        return super().find_class(module, name)


def read_postprocessing(path: Path) -> tuple[StartStep, ...]:
    """nnU-Net's ``postprocessing.pkl`` as a start chain, read without running code from the file.

    :param path: the pickle (``crossval_results_folds_*/postprocessing.pkl``).
    :raises HyperaError: naming the file if it is missing, damaged, or calls anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise HyperaError(f"nnU-Net postprocessing file not found: {path} (nnUNetv2_determine_postprocessing or "
                          "nnUNetv2_find_best_configuration writes it)")
    try:
        with open(path, "rb") as f:
            data = _PostprocessingUnpickler(f).load()
        fns, kwargs = data
        fns, kwargs = list(fns), list(kwargs)
    except Exception as e:  # unpickling raises anything: UnpicklingError, EOFError, ValueError, ...
        raise HyperaError(f"{path} is damaged or not nnU-Net's postprocessing.pkl ({type(e).__name__}: {e})") from None
    if len(fns) != len(kwargs) or not all(isinstance(k, dict) for k in kwargs):
        raise HyperaError(f"{path}: expected (functions, kwargs) of equal length, kwargs dicts; got {len(fns)} "
                          f"functions and {len(kwargs)} kwargs")
    return tuple(StartStep(fn.__module__, fn.__name__, _jsonable(kw)) for fn, kw in zip(fns, kwargs))


def apply_start(seg: np.ndarray, steps: Sequence[StartStep]) -> np.ndarray:
    """The label map after the start chain (a new array; ``seg`` is never changed)."""
    out = np.array(seg, copy=True)
    for step in steps:
        out = np.asarray(step.function()(out, **_call_kwargs(step)))
    return out

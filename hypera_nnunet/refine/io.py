"""Reading nnU-Net's prediction folders and writing refined ones, with clear errors naming the case.

A prediction folder is what ``nnUNetv2_predict --save_probabilities`` writes (``dataset.json`` and
``plans.json`` inside it) or a ``fold_X/validation`` folder of ``nnUNetv2_train --npz`` (both two levels up,
in the model folder). Each case has ``<case><file_ending>`` (nnU-Net's label map), ``<case>.npz`` (the
softmax, key ``probabilities``, shape (C, *label map shape)) and ``<case>.pkl`` (nnU-Net's properties,
with the ``spacing`` it used). Segmentations are read and written with the reader/writer class of the
dataset's plans (``PlansManager(plans).image_reader_writer_class()``), so geometry, names and format are
nnU-Net's own.

**Which input is which.** The label map is what gets refined, and its reader's properties give the
geometry of the output; the probabilities are the evidence the steps use. nnU-Net computes the label map as
the argmax of the very array it saves as probabilities (``export_prediction_from_logits``), so the two must
agree; :func:`check_label_map_is_argmax` enforces that, which catches a damaged label map that still reads
(a ``.nii.gz`` cut in half reads as mostly zeros), a label map that nnU-Net's postprocessing has changed,
and files of different runs.

**Nothing here unpickles arbitrary objects.** The ``.npz`` is read with ``allow_pickle=False``. The ``.pkl``
is nnU-Net's own format (nnU-Net writes it with ``pickle``); it is read by :func:`read_properties` with an
unpickler that rebuilds only built-in containers, numbers, strings and numpy arrays and scalars, and refuses
any other class or function, so a crafted file cannot run code. Reading it could be avoided (the spacing
used comes from the label map; the ``.pkl`` only cross-checks spacing and shape), but nnU-Net always writes
it next to the ``.npz`` and the cross-check catches files of different runs, so it is kept, read that way.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypera_nnunet.errors import HyperaError

SPACING_RTOL = 1e-4
PROB_SUM_TOL = 1e-2
ARGMAX_PROB_TOL = 1e-3
"""A voxel's label must have a probability within this of the voxel's highest one. nnU-Net's label map is the
exact argmax of the saved probabilities, so any tolerance above 0 only has to absorb ties (which argmax breaks
by the lowest channel, as numpy does) and float16 rounding of probabilities (spacing 2**-11 near 1); 1e-3
covers both, while a damaged or postprocessed label map differs by a whole class at many voxels."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the refinement needs from ``dataset.json`` and ``plans.json``."""

    dataset_json_path: Path
    plans_json_path: Path
    dataset_json: dict
    plans: dict
    labels: dict[int, str]  # value -> name, background included
    file_ending: str

    @property
    def foreground(self) -> list[int]:
        return [v for v in sorted(self.labels) if v != 0]

    def reader_writer(self):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        try:
            return PlansManager(self.plans).image_reader_writer_class()
        except Exception as e:  # nnU-Net raises plain RuntimeError/KeyError for unknown reader classes
            raise HyperaError(f"{self.plans_json_path}: cannot get nnU-Net's image reader/writer "
                              f"({type(e).__name__}: {e})") from None

    @classmethod
    def load(cls, dataset_json: Path, plans_json: Path) -> DatasetInfo:
        ds = read_json(Path(dataset_json), "dataset.json")
        plans = read_json(Path(plans_json), "plans.json")
        if "labels" not in ds or "file_ending" not in ds:
            raise HyperaError(f"{dataset_json} has no 'labels' or no 'file_ending': not an nnU-Net dataset.json")
        labels: dict[int, str] = {}
        for name, value in ds["labels"].items():
            if name == "ignore":
                raise HyperaError(f"{dataset_json} declares an ignore label; refinement supports datasets "
                                  "without one")
            if isinstance(value, (list, tuple)):
                raise HyperaError(f"{dataset_json}: label '{name}' is a region {value}; refinement supports "
                                  "label-based (softmax) datasets only")
            if not isinstance(value, int) or isinstance(value, bool):
                raise HyperaError(f"{dataset_json}: label '{name}' has value {value!r}, expected an integer")
            labels[int(value)] = str(name)
        if sorted(labels) != list(range(len(labels))) or len(labels) < 2:
            raise HyperaError(f"{dataset_json}: labels must be the consecutive integers 0..K with K >= 1 "
                              f"(nnU-Net's rule), got {sorted(labels)}")
        return cls(Path(dataset_json), Path(plans_json), ds, plans, labels, str(ds["file_ending"]))


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; a clear error naming the file if it is missing, unreadable or not an object."""
    if not path.is_file():
        raise HyperaError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HyperaError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise HyperaError(f"{path} does not hold a JSON object")
    return data


def find_dataset_files(folder: Path, dataset_json: Path | None = None,
                       plans_json: Path | None = None) -> tuple[Path, Path]:
    """``dataset.json`` and ``plans.json`` for a prediction folder: the given paths, else the first of the
    folder itself (``nnUNetv2_predict``), its parent, its grandparent (``fold_X/validation``)."""
    folder = Path(folder)
    found = {"dataset.json": dataset_json, "plans.json": plans_json}
    for name in found:
        if found[name] is None:
            for d in (folder, folder.parent, folder.parent.parent):
                if (d / name).is_file():
                    found[name] = d / name
                    break
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise HyperaError(f"{' and '.join(missing)} not found in {folder} or the two folders above it; pass "
                          + " ".join(f"-{n.replace('.', '_')} FILE" for n in missing))
    return Path(found["dataset.json"]), Path(found["plans.json"])


def list_cases(folder: Path, file_ending: str) -> list[str]:
    """Case identifiers of the label maps in ``folder`` (hidden and temporary files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HyperaError(f"prediction folder not found: {folder}")
    return sorted(p.name[: -len(file_ending)] for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(file_ending) and not p.name.startswith((".", "_")))


def check_inputs_present(folder: Path, cases: list[str]) -> None:
    """One error naming every case whose ``.npz`` or ``.pkl`` is missing."""
    missing = [f"{c}.{ext}" for c in cases for ext in ("npz", "pkl") if not (Path(folder) / f"{c}.{ext}").is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise HyperaError(f"{folder}: missing {shown}. Refinement needs nnU-Net's probabilities: run "
                          "nnUNetv2_predict with --save_probabilities, or nnUNetv2_train with --npz")


@dataclass
class Prediction:
    case: str
    seg: np.ndarray  # (Z, Y, X) integer labels
    probs: np.ndarray  # (C, Z, Y, X) float32
    spacing: tuple[float, ...]
    properties: dict  # the reader's properties: pass to write_seg for identical geometry


def read_seg(rw, path: Path, case: str, what: str) -> tuple[np.ndarray, dict]:
    if not Path(path).is_file():
        raise HyperaError(f"case {case}: {what} {path} is missing")
    try:
        seg, props = rw.read_seg(str(path))
    except Exception as e:  # readers raise many types (RuntimeError from SimpleITK, OSError, ...)
        raise HyperaError(f"case {case}: cannot read {what} {path} ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else 'corrupted file'})") from None
    if seg.ndim != 4 or seg.shape[0] != 1:
        raise HyperaError(f"case {case}: {what} {path} has shape {seg.shape}, expected one 3-D label map")
    seg = seg[0]
    if not np.all(np.isfinite(seg)) or not np.all(seg == np.round(seg)):
        raise HyperaError(f"case {case}: {what} {path} holds non-integer values, not a label map")
    return seg.astype(np.int16 if seg.max(initial=0) < 2 ** 15 else np.int32), props


def _check_labels(case: str, seg: np.ndarray, info: DatasetInfo, path: Path, what: str) -> None:
    values = np.unique(seg)
    bad = [int(v) for v in values if int(v) not in info.labels]
    if bad:
        raise HyperaError(f"case {case}: {what} {path} has label(s) {bad} that {info.dataset_json_path} does not "
                          f"declare (labels: {sorted(info.labels)})")


def check_label_map_is_argmax(case: str, seg: np.ndarray, probs: np.ndarray, seg_path: Path, npz_path: Path) -> None:
    """Raise, naming the case, unless every voxel's label is a most probable class (within
    :data:`ARGMAX_PROB_TOL`), as it is in nnU-Net's own output.

    :param seg: the label map, (Z, Y, X), values already checked to be labels of the dataset.
    :param probs: the probabilities, (C, Z, Y, X), one channel per label.
    """
    top = probs.max(axis=0)
    own = np.take_along_axis(probs, seg[None].astype(np.intp), axis=0)[0]
    wrong = own < top - ARGMAX_PROB_TOL
    n = int(np.count_nonzero(wrong))
    if n:
        raise HyperaError(f"case {case}: the label map {seg_path} differs from the argmax of the probabilities in "
                          f"{npz_path.name} at {n} of {seg.size} voxels (a truncated or damaged label map, one changed "
                          "by postprocessing, or files of different runs); refine nnU-Net's own prediction, the "
                          "label map and .npz of one nnUNetv2_predict --save_probabilities or nnUNetv2_train --npz run")


_SAFE_PICKLE_GLOBALS = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
})


class _PropertiesUnpickler(pickle.Unpickler):
    """Rebuilds built-in containers, numbers, strings and numpy arrays/scalars; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which nnU-Net's properties never hold "
                                         "(not loaded: unpickling it could run code)")
        return super().find_class(module, name)


def read_properties(path: Path, case: str) -> dict:
    """nnU-Net's ``<case>.pkl`` properties, read without running code from the file (see the module docstring).

    :param path: the ``.pkl`` file.
    :param case: the case, for the error message.
    """
    path = Path(path)
    if not path.is_file():
        raise HyperaError(f"case {case}: {path} is missing (nnU-Net writes it next to the .npz)")
    try:
        with open(path, "rb") as f:
            props = _PropertiesUnpickler(f).load()
    except Exception as e:  # unpickling raises anything: UnpicklingError, EOFError, ValueError, ...
        raise HyperaError(f"case {case}: {path} is corrupted or not nnU-Net's properties file "
                          f"({type(e).__name__}: {e})") from None
    if not isinstance(props, dict):
        raise HyperaError(f"case {case}: {path} holds a {type(props).__name__}, not nnU-Net's properties dict")
    return props


def read_prediction(folder: Path, case: str, info: DatasetInfo, rw) -> Prediction:
    """Read and check one case: label map, probabilities (of which the label map must be the argmax), properties."""
    folder = Path(folder)
    seg_path = folder / f"{case}{info.file_ending}"
    seg, props = read_seg(rw, seg_path, case, "prediction")
    _check_labels(case, seg, info, seg_path, "prediction")
    npz_path, pkl_path = folder / f"{case}.npz", folder / f"{case}.pkl"
    if not npz_path.is_file():
        raise HyperaError(f"case {case}: {npz_path} is missing (predict with --save_probabilities, or train "
                          "with --npz)")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            if "probabilities" not in z.files:
                raise HyperaError(f"case {case}: {npz_path} has no 'probabilities' array (has {z.files}); "
                                  "not written by nnU-Net")
            probs = np.asarray(z["probabilities"], dtype=np.float32)
    except HyperaError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise HyperaError(f"case {case}: {npz_path} is corrupted or unreadable ({type(e).__name__}: {e})") from None
    if probs.ndim != seg.ndim + 1 or probs.shape[1:] != seg.shape:
        raise HyperaError(f"case {case}: probabilities in {npz_path} have shape {probs.shape}, which does not match "
                          f"the label map {seg_path.name} of shape {seg.shape}")
    if probs.shape[0] != len(info.labels):
        raise HyperaError(f"case {case}: {npz_path} has {probs.shape[0]} probability channels but "
                          f"{info.dataset_json_path} declares {len(info.labels)} labels")
    if not np.isfinite(probs).all() or probs.min() < -PROB_SUM_TOL or probs.max() > 1 + PROB_SUM_TOL:
        raise HyperaError(f"case {case}: {npz_path} holds values outside [0, 1] or not finite: not probabilities")
    if np.abs(probs.sum(axis=0) - 1.0).max() > PROB_SUM_TOL:
        raise HyperaError(f"case {case}: the probabilities in {npz_path} do not sum to 1 over classes "
                          "(refinement needs softmax outputs of a label-based model)")
    check_label_map_is_argmax(case, seg, probs, seg_path, npz_path)
    nn_props = read_properties(pkl_path, case)
    if not isinstance(nn_props, dict) or "spacing" not in nn_props:
        raise HyperaError(f"case {case}: {pkl_path} has no 'spacing': not nnU-Net's properties file")
    spacing = tuple(float(s) for s in props["spacing"])
    nn_spacing = tuple(float(s) for s in nn_props["spacing"])
    if len(nn_spacing) != len(spacing) or not np.allclose(nn_spacing, spacing, rtol=SPACING_RTOL, atol=0):
        raise HyperaError(f"case {case}: spacing {nn_spacing} in {pkl_path.name} does not match the spacing "
                          f"{spacing} of {seg_path.name}")
    shape_before = nn_props.get("shape_before_cropping")
    if shape_before is not None and tuple(int(s) for s in shape_before) != seg.shape:
        raise HyperaError(f"case {case}: {pkl_path.name} says the image has shape {tuple(shape_before)}, but "
                          f"{seg_path.name} has shape {seg.shape}")
    return Prediction(case, seg, probs, spacing, props)


def read_reference(ref_folder: Path, case: str, info: DatasetInfo, rw, pred: Prediction) -> np.ndarray:
    """The ground truth of a case, checked against the prediction's shape, spacing and the dataset's labels."""
    path = Path(ref_folder) / f"{case}{info.file_ending}"
    ref, props = read_seg(rw, path, case, "reference")
    if ref.shape != pred.seg.shape:
        raise HyperaError(f"case {case}: reference {path} has shape {ref.shape}, the prediction {pred.seg.shape}")
    spacing = tuple(float(s) for s in props["spacing"])
    if not np.allclose(spacing, pred.spacing, rtol=SPACING_RTOL, atol=0):
        raise HyperaError(f"case {case}: reference {path} has spacing {spacing}, the prediction {pred.spacing}")
    _check_labels(case, ref, info, path, "reference")
    return ref


def write_seg(rw, seg: np.ndarray, path: Path, properties: dict, case: str) -> None:
    """Write a label map with nnU-Net's writer (dtype uint8 below 255 labels, as nnU-Net exports); a failed write
    (full or read-only disk, ...) is one :class:`HyperaError` naming the case and the file."""
    dtype = np.uint8 if int(seg.max(initial=0)) < 255 else np.uint16
    try:
        rw.write_seg(seg.astype(dtype), str(path), properties)
    except OSError as e:
        raise HyperaError(f"case {case}: could not write {path}: {e.strerror or e}") from None
    except Exception as e:  # writers raise other types too (RuntimeError from SimpleITK)
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise HyperaError(f"case {case}: could not write {path} ({type(e).__name__}: {msg})") from None


class StagedFolder:
    """Write an output folder's files into a hidden staging folder beside it, and move them in only when
    everything succeeded (``commit``); on error the staging folder is removed and the output is untouched.

    Why a folder and not :func:`hypera_nnunet.common.atomic_io.atomic_write` per file: the output is many files
    (a label map per case, ``dataset.json``, ``plans.json``, ``refinement.json``) that must appear together or
    not at all, and nnU-Net's writer writes label maps itself. The staging folder sits in the output's parent,
    on the same filesystem, so every move is an ``os.replace`` (atomic); a missing output folder is created by
    renaming the staging folder, so it appears complete. The staging folder is made by a plain ``os.mkdir``,
    so the output gets the permissions any new folder gets under the process umask. ``refinement.json`` is
    moved last: a reader that sees it sees the whole output. Any failure (a file where a folder is expected,
    a read-only or full disk) is one :class:`HyperaError` naming the path.

    :param output: the output folder (created if missing).
    """

    def __init__(self, output: Path) -> None:
        self.output = Path(output).absolute()
        if self.output.exists() and not self.output.is_dir():
            raise HyperaError(f"output {self.output} exists and is not a folder")
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((p for p in self.output.parents if p.exists() and not p.is_dir()), None)
            why = f"{blocker} is a file, not a folder" if blocker else (e.strerror or str(e))
            raise HyperaError(f"cannot create the output folder {self.output}: {why}") from None
        self.path = self._make_staging()

    def _make_staging(self) -> Path:
        for _ in range(100):
            path = self.output.parent / f".{self.output.name}.hypera-tmp-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                os.mkdir(path)  # mode 0o777 & ~umask, as any new folder
                return path
            except FileExistsError:
                continue
            except OSError as e:
                raise HyperaError(f"cannot write into {self.output.parent} (for the output {self.output.name}): "
                                  f"{e.strerror or e}") from None
        raise HyperaError(f"cannot create a staging folder in {self.output.parent}")

    def commit(self) -> None:
        try:
            if not self.output.exists():
                os.rename(self.path, self.output)
                return
            names = sorted(p.name for p in self.path.iterdir())
            # label maps first, the JSON summary last, so a reader that sees refinement.json sees the whole output
            names.sort(key=lambda n: n == "refinement.json")
            for n in names:
                os.replace(self.path / n, self.output / n)
            self.path.rmdir()
        except OSError as e:
            self.discard()
            raise HyperaError(f"could not move the refined files into {self.output}: {e.strerror or e}") from None

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def copy_in(self, source: Path, name: str | None = None) -> None:
        """Copy ``source`` into the staging folder (as ``name``); a failure names the file."""
        target = self.path / (name or Path(source).name)
        try:
            shutil.copyfile(source, target)
        except OSError as e:
            raise HyperaError(f"could not copy {source} to {target}: {e.strerror or e}") from None

    def __enter__(self) -> StagedFolder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

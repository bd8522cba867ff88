"""Datasets in nnU-Net's raw format: a synthetic one for the demo and fast tests, and subsets of an
MSD task (converted with nnU-Net's own ``nnUNetv2_convert_MSD_dataset``) for real-data tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hypera_nnunet.common.atomic_io import atomic_write, atomic_write_json
from hypera_nnunet.errors import HyperaError

SYNTHETIC_LABELS = {"background": 0, "anterior": 1, "posterior": 2}
#: nnU-Net on a small CPU machine: no data-augmentation worker processes, one process for nnU-Net's other pools,
#: no ``torch.compile``. The one copy; the CPU benchmark protocols, the demo and the tests use it.
CPU_ENV: dict[str, str] = {"nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "nnUNet_compile": "0"}
_FOLDER_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


@contextmanager
def _nnunet_folders(env: dict[str, str] | None) -> Iterator[None]:
    """nnU-Net's folder variables of ``env`` in ``os.environ`` for the duration (nnU-Net reads them there)."""
    if env is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in _FOLDER_VARS}
    try:
        for k in _FOLDER_VARS:
            if env.get(k) is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = env[k]
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dataset_name(dataset: str | int, env: dict[str, str] | None = None) -> str:
    """nnU-Net's name for a dataset id or name (``4`` -> ``Dataset004_Hippocampus``), by nnU-Net's own
    ``maybe_convert_to_dataset_name`` (it looks in ``nnUNet_preprocessed``, ``nnUNet_raw`` and ``nnUNet_results``).

    :param dataset: an id (``4``, ``"4"``) or a full name (returned as it is).
    :param env: the environment whose nnU-Net folders to search (default: this process's).
    :raises HyperaError: no dataset, or several, with that id; or neither an id nor a ``Dataset...`` name.
    """
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    with _nnunet_folders(env):
        try:
            return str(maybe_convert_to_dataset_name(dataset))
        except ValueError:
            raise HyperaError(f"dataset '{dataset}' is neither an nnU-Net dataset id nor a name like "
                              "'Dataset004_Hippocampus'.") from None
        except RuntimeError as e:
            found = "several datasets" if str(e).startswith("More than one") else "no dataset"
            raise HyperaError(f"dataset '{dataset}': nnU-Net finds {found} with this id in nnUNet_preprocessed, "
                              "nnUNet_raw and nnUNet_results.") from None


def synthetic_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One MRI-like volume with two touching ellipsoids (labels 1 and 2), in the spirit of Hippocampus.

    Intensities: background ~ N(0.2, 0.08), structure 1 ~ 0.8, structure 2 ~ 0.6, plus a smooth
    bias field, so that a small network must learn both intensity and shape.
    """
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    c = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-3, 3, size=3)
    r = np.array(shape, dtype=np.float32) * rng.uniform(0.16, 0.24, size=3)
    d = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
    seg = np.zeros(shape, dtype=np.uint8)
    inside = d <= 1.0
    split = c[1] + rng.uniform(-2, 2)
    seg[inside & (yy < split)] = 1
    seg[inside & (yy >= split)] = 2
    img = rng.normal(0.2, 0.08, size=shape).astype(np.float32)
    img[seg == 1] += 0.6
    img[seg == 2] += 0.4
    bias = 1.0 + 0.15 * np.sin(xx / shape[2] * np.pi) * np.cos(zz / shape[0] * np.pi)
    return (img * bias).astype(np.float32), seg


def write_synthetic_dataset(raw_root: Path, dataset_id: int = 990, name: str = "HyperaSynthetic",
                            n_train: int = 20, n_test: int = 4, shape: tuple[int, int, int] = (32, 40, 32),
                            spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), seed: int = 0) -> Path:
    """Write ``Dataset{id}_{name}`` in nnU-Net's raw format (NIfTI) and return its folder.

    ``imagesTs`` gets ``n_test`` cases whose labels go to ``labelsTs`` for evaluation.
    """
    import SimpleITK as sitk

    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)

    def save(arr: np.ndarray, path: Path) -> None:
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing(tuple(float(s) for s in spacing[::-1]))
        atomic_write(path, lambda tmp: _write_image(im, tmp, path))

    for i in range(n_train + n_test):
        img, seg = synthetic_case(shape, rng)
        case = f"synth_{i:03d}"
        img_dir, lab_dir = ("imagesTr", "labelsTr") if i < n_train else ("imagesTs", "labelsTs")
        save(img, folder / img_dir / f"{case}_0000.nii.gz")
        save(seg, folder / lab_dir / f"{case}.nii.gz")
    atomic_write_json(folder / "dataset.json", {
        "channel_names": {"0": "MRI"}, "labels": SYNTHETIC_LABELS, "numTraining": n_train,
        "file_ending": ".nii.gz", "name": name,
        "description": "Synthetic two-structure volumes written by hypera-nnunet (no real data).",
    })
    return folder


def _write_image(image, tmp: str, target: Path) -> None:
    """SimpleITK picks its writer by file extension: write under ``tmp`` plus the target's extension, then move
    it onto ``tmp`` (which :func:`~hypera_nnunet.common.atomic_io.atomic_write` moves onto the target)."""
    import SimpleITK as sitk

    staged = tmp + "".join(target.suffixes)
    try:
        sitk.WriteImage(image, staged)
        os.replace(staged, tmp)
    finally:
        Path(staged).unlink(missing_ok=True)


def convert_msd_subset(msd_folder: Path, n_cases: int, dataset_id: int, env: dict[str, str] | None = None,
                       include_test: bool = True) -> str:
    """Convert the first ``n_cases`` labelled cases of an MSD task with ``nnUNetv2_convert_MSD_dataset``.

    The subset is staged as symlinks in a temporary MSD-layout folder (nothing is copied into the
    project). Returns the nnU-Net dataset name, e.g. ``Dataset904_Hippocampus``.
    """
    msd_folder = Path(msd_folder)
    ds_json = msd_folder / "dataset.json"
    if not ds_json.is_file():
        raise HyperaError(f"{msd_folder} is not an MSD task folder: {ds_json} is missing.")
    meta = json.loads(ds_json.read_text())
    cases = sorted(p.name for p in (msd_folder / "labelsTr").glob("*.nii.gz") if not p.name.startswith((".", "_")))
    if n_cases > len(cases):
        raise HyperaError(f"{msd_folder} has {len(cases)} labelled cases, {n_cases} were requested.")
    cases = cases[:n_cases]
    with tempfile.TemporaryDirectory(prefix="hypera_msd_") as tmp:
        stage = Path(tmp) / msd_folder.name
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (stage / sub).mkdir(parents=True)
        for c in cases:
            os.symlink(msd_folder / "imagesTr" / c, stage / "imagesTr" / c)
            os.symlink(msd_folder / "labelsTr" / c, stage / "labelsTr" / c)
        if include_test:
            for p in sorted((msd_folder / "imagesTs").glob("*.nii.gz")):
                if not p.name.startswith((".", "_")):
                    os.symlink(p, stage / "imagesTs" / p.name)
        meta = dict(meta, numTraining=len(cases), training=[], test=[])
        atomic_write_json(stage / "dataset.json", meta)
        run_nnunet(["nnUNetv2_convert_MSD_dataset", "-i", str(stage), "-overwrite_id", str(dataset_id), "-np", "1"],
                   env=env)
    return dataset_name(dataset_id, env)


def nnunet_exe(name: str) -> str:
    """Path of an nnU-Net console script: next to this Python first (same venv), then on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise HyperaError(f"nnU-Net's command `{name}` was not found next to {sys.executable} or on PATH; "
                          "is nnunetv2 installed in this environment?")
    return found


def run_nnunet(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None,
               quiet: bool = False) -> None:
    """Run one nnU-Net CLI command; on failure raise a HyperaError with the tail of its output."""
    exe = nnunet_exe(cmd[0])
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.run([exe, *cmd[1:]], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        out.seek(0)
        text = out.read()
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{text}\n")
    if not quiet and proc.returncode == 0 and os.environ.get("HYPERA_VERBOSE"):
        print(text)
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-25:])
        raise HyperaError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{tail}")

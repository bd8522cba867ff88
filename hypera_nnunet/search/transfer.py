"""Transfer from a similar dataset (HyperPilotRL; issue 16 item 5): a new study starts from the best trials of the
most similar finished study (``search run ... --transfer-from STUDY [STUDY ...]``).

**Similarity** of two datasets, from nnU-Net's ``dataset_fingerprint.json`` (what ``nnUNetv2_extract_fingerprint``
writes; a study of the ``nnunet`` objective keeps a copy in its folder): the vector (:func:`fingerprint_vector`)
of the log median spacing per axis, the log median shape after cropping per axis, the log number of cases and the
median relative size after cropping; the similarity is ``exp(-distance)`` (1 for equal fingerprints). Intensities
are left out: MRI intensities have no common scale across scanners. A study without a fingerprint (the cheap
objectives) has similarity ``None`` and is used only when it is the one source given.

**Warm start**: the source's best ``top`` finished trials whose values lie inside the new space (every parameter of
the new space present, inside its range or choices) are queued first in the new study (Optuna's ``enqueue_trial``),
once, when the study is created; ``study.json`` records the source, its similarity and the queued trials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hypera_nnunet.errors import HyperaError

FINGERPRINT_FILE = "dataset_fingerprint.json"
DEFAULT_TOP = 5


def fingerprint_vector(fp: dict, source: str = "fingerprint") -> np.ndarray:
    """The vector the similarity compares (see the module).

    :param fp: the decoded ``dataset_fingerprint.json``.
    :param source: what to name in errors.
    """
    try:
        if not fp["spacings"] or not fp["shapes_after_crop"]:
            raise ValueError("no cases")
        spacing = np.median(np.asarray(fp["spacings"], dtype=float), axis=0)
        shape = np.median(np.asarray(fp["shapes_after_crop"], dtype=float), axis=0)
        n = len(fp["spacings"])
        rel = float(fp.get("median_relative_size_after_cropping", 1.0))
    except (KeyError, TypeError, ValueError) as e:
        raise HyperaError(f"{source} is not nnU-Net's dataset_fingerprint.json ({type(e).__name__}: {e})") from None
    if spacing.shape != shape.shape or np.any(spacing <= 0) or np.any(shape <= 0) or n < 1:
        raise HyperaError(f"{source}: spacings and shapes_after_crop must be positive and of one dimension")
    return np.concatenate([np.log(spacing), np.log(shape), [math.log(n), rel]])


def similarity(a: dict, b: dict) -> float:
    """``exp(-|v(a) - v(b)|)`` of two fingerprints; datasets of different dimension are not similar (0)."""
    va, vb = fingerprint_vector(a), fingerprint_vector(b)
    if va.shape != vb.shape:
        return 0.0
    return float(math.exp(-float(np.linalg.norm(va - vb))))


def study_fingerprint(folder: Path) -> dict | None:
    path = Path(folder) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise HyperaError(f"{path} is damaged ({e})") from None


def pick_source(target_fp: dict | None, sources: Sequence[Path]) -> tuple[Path, float | None]:
    """The most similar of ``sources`` (study folders) to the target fingerprint, and its similarity."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise HyperaError("--transfer-from needs at least one study folder")
    scored = []
    for s in sources:
        fp = study_fingerprint(s)
        scored.append((None if fp is None or target_fp is None else similarity(target_fp, fp), s))
    known = [x for x in scored if x[0] is not None]
    if known:
        sim, best = max(known, key=lambda x: x[0])
        return best, sim
    if len(sources) > 1:
        raise HyperaError(f"none of {', '.join(map(str, sources))} has a {FINGERPRINT_FILE} to compare with: give "
                          "one source study")
    return sources[0], None


def _inside(dist, value) -> bool:
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return value in dist.choices
    try:
        return dist.low <= value <= dist.high
    except TypeError:
        return False


def best_trials(study, top: int, distributions: dict) -> list[dict]:
    """The params of ``study``'s best ``top`` finished trials that fit ``distributions`` (name -> Optuna
    distribution), best first."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    done.sort(key=lambda t: -t.value)
    out = []
    for t in done:
        if all(n in t.params and _inside(d, t.params[n]) for n, d in distributions.items()):
            out.append({n: t.params[n] for n in distributions})
        if len(out) >= top:
            break
    return out


def dataset_fingerprint(space) -> dict | None:
    """The fingerprint of the dataset an ``nnunet``-objective space trains on (``$nnUNet_preprocessed``), else None."""
    if space.objective != "nnunet":
        return None
    import os

    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    pre = os.environ.get("nnUNet_preprocessed")
    if not pre:
        return None
    try:
        name = maybe_convert_to_dataset_name(space.dataset)
    except RuntimeError:
        return None
    path = Path(pre) / name / FINGERPRINT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def warm_start(study, space, folder: Path, sources: Sequence[Path], top: int = DEFAULT_TOP) -> dict:
    """Queue the best trials of the most similar source study in ``study`` (a new one); returns what
    ``study.json`` records under ``transfer``."""
    from hypera_nnunet.search.study import open_study, read_study_file

    if top < 1:
        raise HyperaError(f"--transfer-top must be at least 1, got {top}")
    fp = dataset_fingerprint(space)
    if fp is not None:
        (Path(folder) / FINGERPRINT_FILE).write_text(json.dumps(fp))
    src, sim = pick_source(fp, sources)
    read_study_file(src)  # one clear line if it is not a study
    source_study, _, _ = open_study(src)
    params = best_trials(source_study, top, {p.key: p.distribution() for p in space.params})
    for p in params:
        study.enqueue_trial(p, user_attrs={"transferred_from": str(src)})
    return {"source": str(Path(src).resolve()), "similarity": sim, "queued": params,
            "candidates": [str(s) for s in sources]}

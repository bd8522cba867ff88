"""Transfer from a similar dataset (``search run --transfer-from``, issue 16 item 5)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from hypera_nnunet.errors import HyperaError  # noqa: E402
from hypera_nnunet.search.study import create_or_check, open_study, read_study_file, transfer_into  # noqa: E402
from hypera_nnunet.search.transfer import fingerprint_vector, pick_source, similarity  # noqa: E402

FP = {"spacings": [[1.0, 1.0, 1.0], [1.0, 1.0, 3.0]], "shapes_after_crop": [[10, 20, 30], [30, 20, 10]],
      "median_relative_size_after_cropping": 0.5, "foreground_intensity_properties_per_channel": {}}
SPACE = {"objective": "hartmann", "fidelity": {"min_epochs": 3, "max_epochs": 9},
         "params": {f"x{i}": {"low": 0.0, "high": 1.0} for i in range(1, 7)}}


def test_the_fingerprint_vector_and_similarity_exactly():
    v = fingerprint_vector(FP)
    assert np.allclose(v, [0, 0, math.log(2), *[math.log(20)] * 3, math.log(2), 0.5], atol=1e-15)
    assert similarity(FP, FP) == 1.0
    coarse = {**FP, "spacings": [[2.0, 2.0, 2.0], [2.0, 2.0, 6.0]]}  # every spacing doubled
    assert similarity(FP, coarse) == pytest.approx(2.0 ** -math.sqrt(3), abs=1e-12)
    assert similarity(FP, {**FP, "spacings": [[1.0, 1.0]] * 2, "shapes_after_crop": [[5, 5]] * 2}) == 0.0
    with pytest.raises(HyperaError, match="not nnU-Net's dataset_fingerprint.json"):
        fingerprint_vector({"spacings": []}, "x.json")


def test_the_most_similar_study_is_picked(tmp_path):
    near, far = tmp_path / "near", tmp_path / "far"
    for d, fp in ((near, {**FP, "shapes_after_crop": [[11, 20, 30], [30, 20, 10]]}),
                  (far, {**FP, "spacings": [[3.0, 3.0, 3.0]] * 2})):
        d.mkdir()
        (d / "dataset_fingerprint.json").write_text(json.dumps(fp))
    src, sim = pick_source(FP, [far, near])
    assert src == near and sim == pytest.approx(similarity(FP, json.loads((near / "dataset_fingerprint.json")
                                                                          .read_text())))
    assert pick_source(None, [far]) == (far, None)
    with pytest.raises(HyperaError, match="give one source study"):
        pick_source(None, [tmp_path / "a", tmp_path / "b"])


def _source(tmp_path):
    from optuna.trial import create_trial

    src = tmp_path / "src"
    create_or_check(src, SPACE, "s.yaml", "random", "none", 0)
    study, space, _ = open_study(src)
    dist = {p.key: p.distribution() for p in space.params}
    for k, value in enumerate([0.2, 0.9, 0.5, 0.7]):
        study.add_trial(create_trial(params={f"x{i}": 0.1 * k for i in range(1, 7)}, distributions=dist,
                                     value=value))
    return src


def test_a_new_study_starts_from_the_sources_best_trials_once(tmp_path):
    src = _source(tmp_path)
    narrow = {**SPACE, "params": {**SPACE["params"], "x1": {"low": 0.0, "high": 0.25}}}
    new = tmp_path / "new"
    create_or_check(new, narrow, "n.yaml", "tpe", "none", 1)
    rec = transfer_into(new, [src], top=2)
    # best first: 0.9 (x = 0.1) and 0.7 (x = 0.3: x1 outside the new range, skipped), then 0.5 (x = 0.2)
    assert [q["x1"] for q in rec["queued"]] == [pytest.approx(0.1), pytest.approx(0.2)]
    assert rec["similarity"] is None and read_study_file(new)["transfer"] == rec
    study, _, _ = open_study(new)
    waiting = study.get_trials(deepcopy=False)
    assert [t.state.name for t in waiting] == ["WAITING", "WAITING"]
    assert transfer_into(new, [src], top=2) == rec and len(open_study(new)[0].get_trials()) == 2  # not twice


def test_a_source_that_is_not_a_study_is_named(tmp_path):
    new = tmp_path / "new"
    create_or_check(new, SPACE, "n.yaml", "tpe", "none", 1)
    with pytest.raises(HyperaError, match="is not a search study"):
        transfer_into(new, [tmp_path / "nothing"], top=2)

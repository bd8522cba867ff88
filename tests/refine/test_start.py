"""Refinement starts from nnU-Net's postprocessing (``refine fit --postprocessing``, issue 17 item 1)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from nnunetv2.postprocessing.remove_connected_components import (
    apply_postprocessing,
    remove_all_but_largest_component_from_segmentation,
)
from refine_testdata import ro, synthetic_prediction, write_model

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.apply import load_refiner, refine_folder
from hypera_nnunet.refine.fit import fit_refiner
from hypera_nnunet.refine.refiner import Refiner
from hypera_nnunet.refine.search import SearchSettings
from hypera_nnunet.refine.start import apply_start, read_postprocessing

SMALL = SearchSettings(population=4, iterations=1, max_search_cases=8)
#: what nnU-Net's determine_postprocessing writes when keep-largest helps the foreground and class 1
NNUNET_PP = ([remove_all_but_largest_component_from_segmentation] * 2,
             [{"labels_or_regions": [1, 2]}, {"labels_or_regions": 1}])


def _pkl(tmp_path, data=NNUNET_PP, name="postprocessing.pkl"):
    p = tmp_path / name
    p.write_bytes(pickle.dumps(data))
    return p


def _two_islands() -> np.ndarray:
    """Class 1: a 3x3x3 block and a 1-voxel island; class 2: a 2x2x2 block and a 2-voxel island."""
    seg = np.zeros((6, 8, 8), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[5, 7, 7] = 1
    seg[1:3, 5:7, 5:7] = 2
    seg[5, 0, 0:2] = 2
    return seg


def test_the_start_is_exactly_nnunets_postprocessing(tmp_path):
    steps = read_postprocessing(_pkl(tmp_path))
    assert [st.to_dict() for st in steps] == [
        {"function": "nnunetv2.postprocessing.remove_connected_components."
                     "remove_all_but_largest_component_from_segmentation", "kwargs": {"labels_or_regions": [1, 2]}},
        {"function": "nnunetv2.postprocessing.remove_connected_components."
                     "remove_all_but_largest_component_from_segmentation", "kwargs": {"labels_or_regions": 1}}]
    seg = ro(_two_islands())
    out = apply_start(seg, steps)
    assert np.array_equal(out, apply_postprocessing(seg.copy(), *NNUNET_PP))
    # the foreground's largest component is class 1's block (27 voxels): every other island goes, class 2's block too
    assert int((out == 1).sum()) == 27 and int((out == 2).sum()) == 0
    # only class 1 kept-largest: class 2's two parts stay
    only1 = apply_start(seg, read_postprocessing(_pkl(tmp_path, ([NNUNET_PP[0][0]], [{"labels_or_regions": 1}]))))
    assert int((only1 == 1).sum()) == 27 and int((only1 == 2).sum()) == 10


def test_regions_survive_json(tmp_path):
    """nnU-Net regions are tuples; JSON makes them lists, and the start turns them back before the call."""
    data = ([NNUNET_PP[0][0]], [{"labels_or_regions": [(1, 2)]}])
    refiner = Refiner(["threshold_grow"], labels={0: "background", 1: "a", 2: "b"})
    refiner.start = read_postprocessing(_pkl(tmp_path, data))
    back = Refiner.from_dict(json.loads(json.dumps(refiner.to_dict())))
    seg = _two_islands()
    assert np.array_equal(apply_start(seg, back.start), apply_postprocessing(seg.copy(), *data))


def test_a_refiner_without_chains_gives_nnunets_postprocessing(tmp_path):
    refiner = Refiner(["threshold_grow"], labels={0: "background", 1: "a", 2: "b"})
    refiner.start = read_postprocessing(_pkl(tmp_path))
    d = refiner.to_dict()
    assert d["version"] == 4 and len(d["start"]) == 2
    back = Refiner.from_dict(json.loads(json.dumps(d)))
    seg = ro(_two_islands())
    probs = np.stack([seg == k for k in range(3)]).astype(np.float32)
    out, _ = back.refine(seg, probs, (1.0, 1.0, 1.0))
    assert np.array_equal(out, apply_postprocessing(seg.copy(), *NNUNET_PP))


@pytest.mark.parametrize("payload, words", [
    ((os.system, ["true"]), "posix.system"),
    (b"\x80\x04not a pickle", "damaged or not nnU-Net's postprocessing.pkl"),
    (([NNUNET_PP[0][0]], [{"labels_or_regions": 1}, {}]), "2 kwargs"),
])
def test_bad_postprocessing_files_are_refused_naming_them(tmp_path, payload, words):
    p = tmp_path / "postprocessing.pkl"
    p.write_bytes(payload if isinstance(payload, bytes) else pickle.dumps(payload))
    with pytest.raises(HyperaError) as e:
        read_postprocessing(p)
    assert str(p) in str(e.value) and words in str(e.value)
    with pytest.raises(HyperaError, match="not found"):
        read_postprocessing(tmp_path / "missing.pkl")


def test_a_refiner_naming_another_function_is_refused():
    d = Refiner(["threshold_grow"], labels={0: "background", 1: "a"}).to_dict()
    d.update(version=4, start=[{"function": "os.system", "kwargs": {"command": "true"}}])
    with pytest.raises(HyperaError, match="os.system is not an allowed postprocessing function"):
        Refiner.from_dict(d, source="r.json")


def test_fit_and_apply_start_from_the_postprocessed_cases(tmp_path):
    """The synthetic predictions have a spurious block of class 1 far from the structures: nnU-Net's
    keep-largest removes it, so the fit's "before" already has it removed, and apply gives, for a class whose
    chain is empty, exactly nnU-Net's postprocessed label map."""
    m = write_model(tmp_path, n_cases=4, folds=2)
    pkl = _pkl(tmp_path, ([NNUNET_PP[0][0]], [{"labels_or_regions": 1}]))
    plain = fit_refiner(m["val"], m["gt"], tmp_path / "plain.json", steps=["threshold_grow"], search=SMALL,
                        log=lambda s: None)
    started = fit_refiner(m["val"], m["gt"], tmp_path / "started.json", steps=["threshold_grow"], search=SMALL,
                          postprocessing=pkl, log=lambda s: None)
    before_plain = plain["fit"]["metrics_before"]["1"]["Dice"]
    before_started = started["fit"]["metrics_before"]["1"]["Dice"]
    assert before_started > before_plain  # the blob (27 voxels of false class 1 per case) is gone
    assert started["version"] == 4 and started["start"][0]["kwargs"] == {"labels_or_regions": 1}
    refiner = load_refiner(tmp_path / "started.json")
    refiner.chains.clear()  # the start alone
    rng = np.random.default_rng(5)
    _, probs, seg = synthetic_prediction((24, 28, 24), rng)
    out, _ = refiner.refine(ro(seg), probs, (1.0, 1.0, 1.0))
    assert np.array_equal(out, apply_postprocessing(seg.copy(), [NNUNET_PP[0][0]], [{"labels_or_regions": 1}]))
    assert int((seg == 1).sum()) - int((out == 1).sum()) >= 27
    # the folder round trip: refine apply runs the start too
    refine_folder(m["val"][0], tmp_path / "out", tmp_path / "started.json")
    assert (tmp_path / "out" / "refinement.json").is_file()

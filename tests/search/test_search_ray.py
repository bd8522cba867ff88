"""The Ray Tune backend on a local Ray with 2 CPUs: ASHA stops weak trials early; PBT's exploit step restarts a
member from the other member's checkpoint (its state really continues, as its lineage shows)."""

from __future__ import annotations

import json
import os

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from hypera_nnunet.search.ray_backend import run_ray, trial_number  # noqa: E402
from hypera_nnunet.search.space import parse_space  # noqa: E402

SPACE = {"objective": "curve", "fidelity": {"min_epochs": 2, "max_epochs": 18},
         "params": {"nnunet.initial_lr": {"low": 0.001, "high": 0.1, "log": True},
                    "nnunet.momentum": {"low": 0.8, "high": 0.99}}}


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_trial_numbers_from_ray_ids():
    assert (trial_number("a1b2c_00003"), trial_number("x"), trial_number("f_12")) == (3, 0, 12)


def test_asha_stops_weak_trials_early(local_ray, tmp_path, capsys):
    from hypera_nnunet.cli import main
    from hypera_nnunet.report import write_report

    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    study = tmp_path / "st"
    # one trial at a time (2 CPUs each): the order, and so ASHA's decisions, follow from the seed alone
    assert main(["search", "run", str(space_file), "--study", str(study), "--backend", "ray", "-n", "4", "--seed", "0",
                 "--cpus-per-trial", "2"]) == 0
    out = json.loads((study / "ray_results.json").read_text())
    rows = out["trials"]
    assert len(rows) == 4 and out["scheduler"] == "asha"
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    stopped = [r for r in rows if r["state"] == "PRUNED"]
    assert stopped and all(r["epochs"] < 18 for r in stopped)  # stopped at a rung (2 or 6 epochs)
    assert all(r["epochs"] == 18 for r in rows if r["state"] == "COMPLETE")
    assert out["best"]["value"] == max(r["value"] for r in rows if r["state"] == "COMPLETE")
    capsys.readouterr()
    assert main(["search", "status", str(study)]) == 0
    assert "(ray: random, asha): 4 trial(s)" in capsys.readouterr().out
    assert main(["search", "export", str(study), "-o", str(tmp_path / "best.json")]) == 0
    best = json.loads((tmp_path / "best.json").read_text())
    assert best == {"nnunet": {"initial_lr": out["best"]["params"]["nnunet.initial_lr"],
                               "momentum": out["best"]["params"]["nnunet.momentum"]}}
    html = write_report(study).read_text()
    assert "A Ray Tune study" in html and 'data-table="trials"' in html


def test_pbt_exploit_continues_the_other_member_s_checkpoint(local_ray, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERA_CURVE_EPOCH_S", "0.15")  # both members run side by side
    space = parse_space(SPACE, "space")
    out = run_ray(space, tmp_path / "st", n_trials=2, scheduler="pbt", seed=1, cpus_per_trial=1,
                  perturbation_interval=3)
    rows = out["trials"]
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows)
    restored = [(r, step) for r in rows for step in r["lineage"] if step["exploit"]]
    assert restored, "PBT never exploited"
    by_id = {r["trial_id"]: r for r in rows}
    for r, step in restored:
        donor = step["restored_from_trial"]
        assert donor in by_id and donor != r["trial_id"]  # restarted from the *other* member's checkpoint
        assert step["epoch"] >= 3 and step["epoch"] % 3 == 0
    # the recipient's state went on from the donor's: its curve state's lineage starts with the donor's number
    r, step = restored[-1]
    state = json.loads((tmp_path / "st" / r["folder"] / "curve_state.json").read_text())
    assert state["epoch"] == 18
    assert trial_number(step["restored_from_trial"]) in state["lineage"]
    assert state["lineage"][-1] == trial_number(r["trial_id"])
    assert os.path.isdir(tmp_path / "st" / "ray_storage")


@pytest.mark.nnunet
def test_pbt_on_nnunet_trainings_continues_the_donor_s_checkpoint(hippo, local_ray, tmp_path, monkeypatch):
    """Two real nnU-Net trainings (the Hippocampus subset, 4 epochs of 5 iterations) as a PBT population: the member
    that exploits copies the other's checkpoint_latest.pth and epochs, and nnUNetv2_train --c continues from it."""
    env, name, root = hippo
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_extTrainer"):
        monkeypatch.setenv(k, env[k])
    space = parse_space({"objective": "nnunet", "trainer": "nnUNetTrainerConfigured", "dataset": "904",
                         "configuration": "3d_fullres", "plans": "hyperaCPUPlans", "fold": 0, "seed": 3,
                         "fidelity": {"min_epochs": 1, "max_epochs": 4, "iterations": 5},
                         "params": {"nnunet.initial_lr": {"low": 0.001, "high": 0.03, "log": True}}}, "space")
    out = run_ray(space, tmp_path / "st", n_trials=2, scheduler="pbt", seed=0, cpus_per_trial=1,
                  perturbation_interval=2)
    rows = out["trials"]
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows), rows
    restored = [(r, step) for r in rows for step in r["lineage"] if step["exploit"]]
    assert restored, "PBT never exploited"
    r, step = restored[0]
    donor = next(x for x in rows if x["trial_id"] == step["restored_from_trial"])
    assert donor is not r
    folder = tmp_path / "st" / r["folder"]
    log = (folder / "train.log").read_text().splitlines()
    commands = [x for x in log if x.startswith("$ ")]
    assert len(commands) >= 2 and commands[-1].endswith("--c")  # continued, from the copied checkpoint
    fold = next((folder / "nnUNet_results").glob("*/*/fold_0"))
    lines = [json.loads(x) for x in (fold / "epochs.jsonl").read_text().splitlines()]
    donor_fold = next((tmp_path / "st" / donor["folder"] / "nnUNet_results").glob("*/*/fold_0"))
    donor_lines = [json.loads(x) for x in (donor_fold / "epochs.jsonl").read_text().splitlines()]
    n = step["epoch"]
    assert [x["epoch"] for x in lines[:n]] == list(range(n))
    assert lines[:n] == donor_lines[:n]  # the donor's first epochs, copied with its checkpoint
    assert sorted({x["epoch"] for x in lines}) == [0, 1, 2, 3] and (fold / "validation" / "summary.json").is_file()

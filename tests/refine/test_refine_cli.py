"""``register`` wires ``refine fit``/``refine apply`` into a parent parser, as hypera_nnunet.cli does."""

import argparse

import pytest

from hypera_nnunet.refine.cli import register


def parser():
    p = argparse.ArgumentParser(prog="hypera-nnunet")
    register(p.add_subparsers(dest="command", required=True))
    return p


def test_register_sets_func_and_defaults():
    args = parser().parse_args(["refine", "apply", "-i", "in", "-o", "out", "-m", "r.json"])
    assert callable(args.func) and args.np == 1 and args.m == "r.json"
    args = parser().parse_args(["refine", "fit", "-d", "4", "-f", "0", "1"])
    assert callable(args.func) and args.f == [0, 1] and args.c == "3d_fullres" and args.population == 8
    assert args.steps == ["foreground_prior", "threshold_grow", "boundary_level", "morphology", "components"]
    # the names of refiner format 1 and the old option name still work
    args = parser().parse_args(["refine", "fit", "-d", "4", "--agents", "shape", "object"])
    assert args.steps == ["morphology", "components"]


def test_unknown_step_and_missing_subcommand_are_rejected():
    with pytest.raises(SystemExit):
        parser().parse_args(["refine", "fit", "-d", "4", "--steps", "magic"])
    with pytest.raises(SystemExit):
        parser().parse_args(["refine"])


def test_fit_needs_exactly_one_input_mode(capsys):
    from hypera_nnunet.refine.cli import main

    assert main(["refine", "fit"]) == 2
    assert "either -i" in capsys.readouterr().err


def test_fit_names_a_missing_postprocessing_file(tmp_path, capsys):
    """``--postprocessing`` reaches the fit: a missing pickle is one line naming it, before any case is read."""
    from refine_testdata import write_model

    from hypera_nnunet.refine.cli import main

    m = write_model(tmp_path, n_cases=2)
    missing = tmp_path / "nope" / "postprocessing.pkl"
    assert main(["refine", "fit", "-i", str(m["val"][0]), "-ref", str(m["gt"]), "-o", str(tmp_path / "r.json"),
                 "--postprocessing", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and not (tmp_path / "r.json").exists()

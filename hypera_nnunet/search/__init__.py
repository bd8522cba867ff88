"""Offline search over whole nnU-Net trainings (``hypera-nnunet search``), on Optuna.

:mod:`.space` (the search space file), :mod:`.objectives` (a trial in, a value out), :mod:`.study` (the study
folder, its journal, workers, recovery), :mod:`.cli`. Optuna is the optional extra ``[search]``.
"""

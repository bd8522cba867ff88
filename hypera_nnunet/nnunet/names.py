"""Is a trainer name known? HYPERA's names from :mod:`.variant_table` (no torch, no class built), nnU-Net's own
trainers through nnU-Net's own lookup (``recursive_find_python_class`` on its trainer folder, as
``nnUNetv2_train`` does; that imports nnU-Net's trainer modules, hence torch, but only for non-HYPERA names).
"""

from __future__ import annotations

import os

from hypera_nnunet.nnunet.variant_table import is_hypera_name


def is_nnunet_trainer(name: str) -> bool:
    """Whether nnU-Net's own package (``nnunetv2.training.nnUNetTrainer``) defines a trainer class ``name``.

    :param name: a trainer class name, e.g. ``nnUNetTrainerNoDA``.
    """
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
    return recursive_find_python_class(folder, name, "nnunetv2.training.nnUNetTrainer") is not None


def known_trainer(name: str) -> bool:
    """Whether HYPERA or nnU-Net (its own package) defines a trainer of this name.

    :param name: a trainer name as given to ``nnUNetv2_train -tr``.
    """
    return is_hypera_name(name) or is_nnunet_trainer(name)

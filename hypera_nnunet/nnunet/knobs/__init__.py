"""The knobs of an ``nnUNetTrainer``, one object each, registered by name (:data:`KNOBS`).

Every module in this package is imported here, and each registers its knobs with ``@register_knob``:
a new knob is one new module. A knob's ``position`` orders the knob features in the agents' state
vector; positions are permanent (a saved policy depends on them): ``lr`` 0, ``ce_dice_balance`` 1,
``ds_decay`` 2, ``batch_size`` 3, ``aug_prob`` 4, ``aug_strength`` 5, ``weight_decay`` 6, ``dropout`` 7,
``momentum`` 8, ``nesterov`` 9; a new knob takes the next free number.
"""

import importlib
import pkgutil

from hypera_nnunet.nnunet.knobs.base import KNOBS, Knob, register_knob

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

from hypera_nnunet.nnunet.knobs.knobset import NNUNetKnobs  # noqa: E402

__all__ = ["KNOBS", "Knob", "NNUNetKnobs", "register_knob"]

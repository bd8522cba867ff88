"""The hyperparameter agents, registered by config name (:data:`AGENTS`).

Every module in this package is imported here; each agent class registers itself with
``@register_agent``. A new agent is one new module (plus a knob module in
:mod:`hypera_nnunet.nnunet.knobs` if it needs a new knob): see ``docs/architecture.md``.
"""

import importlib
import pkgutil

from hypera_nnunet.agents.base import AGENTS, Hook, HyperparameterAgent, Proposal, learn_together, register_agent

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

from hypera_nnunet.agents.augmentation import AugmentationAgent  # noqa: E402
from hypera_nnunet.agents.batch_size import BatchSizeAgent  # noqa: E402
from hypera_nnunet.agents.learning_rate import LearningRateAgent  # noqa: E402
from hypera_nnunet.agents.loss_weights import LossFunctionAgent  # noqa: E402
from hypera_nnunet.agents.optimization import OptimizationAgent  # noqa: E402
from hypera_nnunet.agents.regularization import RegularizationAgent  # noqa: E402

__all__ = ["AGENTS", "Hook", "HyperparameterAgent", "Proposal", "learn_together", "register_agent",
           "LearningRateAgent", "LossFunctionAgent", "BatchSizeAgent", "AugmentationAgent", "RegularizationAgent",
           "OptimizationAgent"]

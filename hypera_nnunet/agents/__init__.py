"""The six hyperparameter agents, by config name."""

from hypera_nnunet.agents.augmentation import AugmentationAgent
from hypera_nnunet.agents.base import Hook, HyperparameterAgent, Proposal, learn_together
from hypera_nnunet.agents.batch_size import BatchSizeAgent
from hypera_nnunet.agents.learning_rate import LearningRateAgent
from hypera_nnunet.agents.loss_weights import LossFunctionAgent
from hypera_nnunet.agents.optimization import OptimizationAgent
from hypera_nnunet.agents.regularization import RegularizationAgent

AGENTS: dict[str, type[HyperparameterAgent]] = {
    cls.name: cls
    for cls in (LearningRateAgent, LossFunctionAgent, BatchSizeAgent, AugmentationAgent, RegularizationAgent,
                OptimizationAgent)
}

__all__ = ["AGENTS", "Hook", "HyperparameterAgent", "Proposal", "learn_together", "LearningRateAgent",
           "LossFunctionAgent", "BatchSizeAgent", "AugmentationAgent", "RegularizationAgent", "OptimizationAgent"]

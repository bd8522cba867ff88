"""The experience store (issue 14): runs' transitions and outcomes, and seeded baselines' curves.

Imports only :mod:`hypera_nnunet.common` and numpy: the coordinator, the trainers and the CLI all read it.
"""

from hypera_nnunet.store.experience import (
    STORE_ENV,
    ExperienceStore,
    RunTransitions,
    StoredRun,
    baseline_key,
    new_run_id,
    store_path,
)
from hypera_nnunet.store.recorder import RunRecorder

__all__ = ["STORE_ENV", "ExperienceStore", "RunRecorder", "RunTransitions", "StoredRun", "baseline_key",
           "new_run_id", "store_path"]

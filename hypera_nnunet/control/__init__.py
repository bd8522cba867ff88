"""Hyperparameter control, free of nnU-Net: the coordinator and what it orchestrates.

* :mod:`.signals` -- nnU-Net's training signals as one state vector;
* :mod:`.knobset` -- the typed interface the coordinator expects of a trainer's knobs;
* :mod:`.strategies` -- conflict strategies, registered by name;
* :mod:`.schedule` -- explore / exploit / fine-tune by training progress;
* :mod:`.rewards` -- reward shaping (shared, specialised, penalties);
* :mod:`.safeguards` -- rollback and trust;
* :mod:`.decision_log` -- ``decisions.jsonl``, its fingerprints and recovery of a damaged log;
* :mod:`.timing` -- the agents' time accounting and one-thread sections;
* :mod:`.coordinator` -- orchestration of the above at nnU-Net's hooks.
"""

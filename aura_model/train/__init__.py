"""The AuRA distillation trainer: teacher ASR encoder -> LoRA + AudioEmbedding on a chat LLM.

Public API::

    from aura_model.train import TrainSpec, train, build_spec
    spec = build_spec("run.yaml", {"train.lr": "3e-4"}, {"teacher": ..., "student": ..., "data": ..., "output": ...})
    result = train(spec)            # -> TrainResult; raises AuraError on bad input

The command line (`aura train`, `python -m aura_model.train`) is in ``command.py``.
"""

from .config import DatasetConfig, TrainConfig, TrainSpec, build_spec, read_config_file
from .loop import TrainResult, train
from .progress import JsonReporter, ListReporter, Reporter, TqdmReporter

__all__ = [
    "DatasetConfig", "JsonReporter", "ListReporter", "Reporter", "TqdmReporter", "TrainConfig", "TrainResult",
    "TrainSpec", "build_spec", "read_config_file", "train",
]

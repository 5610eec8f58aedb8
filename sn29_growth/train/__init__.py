"""Training a (grown) checkpoint: ``train(model_dir, out_dir, config, data) -> TrainResult``.

Modules: :mod:`.config` (frozen configs), :mod:`.schedule` (learning rates per step), :mod:`.recipe`
(new slices of a grown model), :mod:`.optim` (AdamW with a per-element learning rate for new slices),
:mod:`.data` (text sources, packed windows, data position), :mod:`.distributed` (torchrun, FSDP2, full
state dicts), :mod:`.checkpoint` (crash-safe checkpoints, final model), :mod:`.plot` (loss curve),
:mod:`.loop` (the loop). Multi-process: ``torchrun --nproc_per_node=N -m sn29_growth.train MODEL_DIR
OUT_DIR [flags of sn29 train]``.
"""

from sn29_growth.train.config import (
    BatchConfig,
    CheckpointConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from sn29_growth.train.data import CorpusTexts, FileTexts, SampledTexts, TextSource
from sn29_growth.train.loop import TrainResult, train

__all__ = [
    "BatchConfig",
    "CheckpointConfig",
    "CorpusTexts",
    "FileTexts",
    "OptimizerConfig",
    "SampledTexts",
    "ScheduleConfig",
    "TextSource",
    "TrainConfig",
    "TrainResult",
    "train",
]

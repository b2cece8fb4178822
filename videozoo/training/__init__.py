"""The training engine shared by every recipe and by fine-tuning (docs/training.md).

config, run_info = parse_config(Config(), PRESETS)          # defaults + --preset + overrides
trainer = Trainer(method=method, optimizer=optimizer, dataset=dataset, batch_size=config.batch_size, ...)
trainer.fit()                                                # DDP under torchrun, checkpoints, exact resume
trainer.export(f"{config.run_dir}/export")                   # save_pretrained + model card
"""

from videozoo.training import schedules
from videozoo.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from videozoo.training.config import ConfigError, parse_config, save_config
from videozoo.training.data import DataLoadingError
from videozoo.training.loop import Trainer, summary_line
from videozoo.training.seeding import SeededDataset, epoch_batches, rng_state, set_rng_state

__all__ = [
    "ConfigError",
    "DataLoadingError",
    "SeededDataset",
    "Trainer",
    "epoch_batches",
    "latest_checkpoint",
    "load_checkpoint",
    "parse_config",
    "rng_state",
    "save_checkpoint",
    "save_config",
    "schedules",
    "set_rng_state",
    "summary_line",
]

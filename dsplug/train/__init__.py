"""dsplug.train: the Trainer, checkpoints, the paper's schedule, logs, plots and the model factory.

Model code never imports this package; it sits on top of the wrapper, losses, metrics and data.
One job per module: ``config`` (TrainConfig), ``runtime`` (device, precision, loaders),
``loop`` (one epoch, stopping early), ``resume`` (a run's checkpoints), ``semi_steps`` (images
without masks: teacher, loader, loss), ``reporting`` (history, summary, plots) and ``trainer``
(the Trainer that wires them).
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .loop import NonFiniteLossError, TrainingInterrupted
from .models import MODEL_ARCHS, build_model, model_config, model_divisor
from .reporting import efficiency
from .runtime import seed_everything
from .schedule import EarlyStopping, paper_optimizer, paper_scheduler
from .trainer import Trainer

__all__ = [
    "MODEL_ARCHS",
    "CheckpointError",
    "EarlyStopping",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "build_model",
    "efficiency",
    "load_checkpoint",
    "model_config",
    "model_divisor",
    "paper_optimizer",
    "paper_scheduler",
    "save_checkpoint",
    "seed_everything",
]

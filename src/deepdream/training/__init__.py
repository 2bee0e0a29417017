"""Train and evaluate image classifiers on image folders, then dream with them.

`fit` runs a whole study (data -> run folder with checkpoints, metrics and figures) as named steps
(run); the pieces are config (TrainConfig) and recipes (what works per architecture), data (folders,
decoding, augmentation), loop (train_one_epoch, predict, evaluate), optim (loss, torch optimizers,
schedule), precision, distributed (torchrun), evaluation (evaluate_checkpoint) and report
(confusion matrices, figures, comparisons). Architectures and checkpoints live in deepdream.models.
"""

from ..errors import DatasetError
from ..models.architectures import ARCHITECTURES, build_model
from ..models.checkpoint import CheckpointInfo, backbone_from_checkpoint, load_checkpoint, save_checkpoint
from ..models.preprocessing import Preprocessing
from .config import TrainConfig, load_config
from .data import discover
from .evaluation import evaluate_checkpoint
from .loop import evaluate, predict, train_one_epoch
from .recipes import RECIPES, recipe
from .report import confusion_matrix
from .run import fit

__all__ = [
    "ARCHITECTURES",
    "CheckpointInfo",
    "DatasetError",
    "Preprocessing",
    "RECIPES",
    "TrainConfig",
    "backbone_from_checkpoint",
    "build_model",
    "confusion_matrix",
    "discover",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "load_config",
    "predict",
    "recipe",
    "save_checkpoint",
    "train_one_epoch",
]

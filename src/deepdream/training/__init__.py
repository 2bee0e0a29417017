"""Train and evaluate image classifiers on image folders, then dream with them.

`fit` runs a whole study (data -> run folder with checkpoints, metrics and figures); the pieces
are in data (folders, decoding, augmentation), models (architecture registry), loop (train and
evaluate), checkpoint (save/load, checkpoint -> dreaming backbone) and report (confusion matrices,
figures, comparisons).
"""

from ..models.architectures import ARCHITECTURES, build_model
from ..models.checkpoint import CheckpointInfo, backbone_from_checkpoint, load_checkpoint, save_checkpoint
from ..models.preprocessing import Preprocessing
from .data import DatasetError, discover
from .loop import TrainConfig, evaluate, fit, train_one_epoch
from .report import confusion_matrix

__all__ = [
    "ARCHITECTURES",
    "CheckpointInfo",
    "DatasetError",
    "Preprocessing",
    "TrainConfig",
    "backbone_from_checkpoint",
    "build_model",
    "confusion_matrix",
    "discover",
    "evaluate",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
    "train_one_epoch",
]

"""Many files, many workers: `run_batch` dreams folders of images and videos with a resumable manifest,
in local worker processes (`LocalExecutor`) or on a Ray cluster (`RayExecutor`, extra `deepdream[ray]`).

plan (items, mirrored outputs, seeds, settings hash), manifest (SQLite), worker (one network per
worker), local (process pool), ray (actors), run (the loop that ties them together).
"""

from .local import LocalExecutor
from .manifest import MANIFEST_NAME, ItemResult, Manifest, Record
from .plan import BatchItem, BatchJob, VideoOptions, expand_inputs, item_seed, plan_batch
from .ray import RayExecutor
from .run import BatchSummary, Executor, run_batch
from .worker import ItemRunner, Task

__all__ = [
    "MANIFEST_NAME",
    "BatchItem",
    "BatchJob",
    "BatchSummary",
    "Executor",
    "ItemResult",
    "ItemRunner",
    "LocalExecutor",
    "Manifest",
    "RayExecutor",
    "Record",
    "Task",
    "VideoOptions",
    "expand_inputs",
    "item_seed",
    "plan_batch",
    "run_batch",
]

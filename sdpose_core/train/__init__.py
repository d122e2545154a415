"""Training: the training loop (single process or torchrun DDP), the LR schedule, resumable state, run logs,
recipes and validation; the inference loop over a top-down dataset (`sdpose_core.evaluation.loop`) is
re-exported here."""

from sdpose_core.evaluation.loop import (
    DatasetPredictions,
    collect_predictions,
    predict_dataset,
    predictions_to_results,
)
from sdpose_core.train.config import TrainConfig
from sdpose_core.train.distributed import DistContext, setup_distributed, teardown_distributed
from sdpose_core.train.schedule import WarmupStepSchedule
from sdpose_core.train.trainer import Trainer, TrainResult, train
from sdpose_core.train.validate import score_results, validate

__all__ = [
    "DatasetPredictions",
    "DistContext",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "WarmupStepSchedule",
    "collect_predictions",
    "predict_dataset",
    "predictions_to_results",
    "score_results",
    "setup_distributed",
    "teardown_distributed",
    "train",
    "validate",
]

"""The training loop, callbacks and checkpoints."""
from .callbacks import (Callback, CSVLogger, EarlyStopping, History, LearningRateScheduler, ModelCheckpoint,
                        ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)
from .checkpoint import is_run_dir, latest_checkpoint, load_checkpoint
from .loop import RunCheckpoint, evaluate, fit, predict_flip_averaged, predict_tta, tta_views
from .resume import resume

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "History", "LearningRateScheduler", "ModelCheckpoint",
           "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN", "RunCheckpoint", "evaluate", "fit",
           "predict_flip_averaged", "predict_tta", "tta_views",
           "is_run_dir", "latest_checkpoint", "load_checkpoint", "resume"]

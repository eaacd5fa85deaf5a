"""``from cnnlab.callbacks import EarlyStopping`` as in Keras."""
from .training.callbacks import (Callback, CSVLogger, EarlyStopping, History, LearningRateScheduler,  # noqa: F401
                                 ModelCheckpoint, ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)
from .training.loop import RunCheckpoint  # noqa: F401

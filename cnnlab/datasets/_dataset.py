"""The ``Dataset`` record returned by ``cnnlab.datasets.load``."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    name: str
    source: str  # where the files were found
    extra: dict = field(default_factory=dict)

    def __iter__(self):
        """``(x_train, y_train), (x_test, y_test) = dataset`` works as with ``load_data``."""
        return iter(((self.x_train, self.y_train), (self.x_test, self.y_test)))

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
                f"classes={self.num_classes}, source={self.source!r})")

"""Data sets as uint8 NHWC arrays, the folders they are found in, and the input pipeline.

``load(name_or_path)`` returns a ``Dataset``; ``mnist.load_data()`` etc. return Keras-style
``(x_train, y_train), (x_test, y_test)``. Files are looked for in the explicit ``path``,
``$CNNLAB_DATA/<name>/``, ``~/.cache/cnnlab/<name>/`` (``$XDG_CACHE_HOME``), system locations,
and are otherwise downloaded with checksum verification (off with ``download=False`` or
``CNNLAB_OFFLINE=1``).
"""
from . import augment, cifar10, cifar100, digits, fashion_mnist, mnist, pipeline
from ._catalog import NAMES, load, load_directory, report
from ._dataset import Dataset
from ._store import ChecksumError, DatasetNotFoundError, cache_root, download_file, search_dirs
from .folder import image_folder
from .pipeline import BatchIterator, Normalize

__all__ = ["NAMES", "load", "load_directory", "report", "Dataset", "DatasetNotFoundError", "ChecksumError",
           "image_folder", "BatchIterator", "Normalize", "augment", "pipeline", "mnist", "fashion_mnist",
           "cifar10", "cifar100", "digits", "cache_root", "download_file", "search_dirs"]

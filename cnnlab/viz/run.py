"""Loading a training run for pictures: the model, how its data was prepared, the data set."""
import os
import warnings

import numpy as np

from ..backend import floatx

# Data sets guessed from the model's input shape when run.json does not say.
_BY_SHAPE = {(8, 8, 1): "digits", (28, 28, 1): "mnist", (32, 32, 3): "cifar10"}


class Preprocess:
    """uint8 images -> model inputs: ``'scale'`` (x/255), ``'standardize'`` ((x-mean)/std) or ``'none'``."""

    def __init__(self, mode="scale", mean=None, std=None, scale=None):
        self.mode = mode
        self.mean = None if mean is None else np.asarray(mean, dtype=floatx)
        self.std = None if std is None else np.asarray(std, dtype=floatx)
        self.scale = scale

    @classmethod
    def from_config(cls, spec, x_train=None):
        """From run.json's ``preprocessing``: a name or a dict (mode/normalize/type, mean, std, scale)."""
        if spec is None:
            return cls("scale")
        if isinstance(spec, (int, float)):
            return cls("scale", scale=float(spec))
        if isinstance(spec, str):
            spec = {"mode": spec}
        if not isinstance(spec, dict):
            warnings.warn(f"run.json: unrecognised preprocessing {spec!r}; assuming x/255")
            return cls("scale")
        mode = spec.get("mode") or spec.get("normalize") or spec.get("type") or spec.get("name")
        scale = spec.get("scale", spec.get("rescale"))
        if isinstance(mode, dict):
            return cls.from_config(mode, x_train)
        if mode in (None, True) and scale is not None:
            return cls("scale", scale=float(scale))
        mode = str(mode or "scale").lower()
        if mode in ("none", "raw", "identity", "false"):
            return cls("none")
        if mode in ("standardize", "standardise", "standard"):
            mean, std = spec.get("mean"), spec.get("std")
            if (mean is None or std is None) and x_train is not None:
                from ..datasets.pipeline import Normalize
                norm = Normalize("standardize").fit(x_train)
                mean, std = norm.mean, norm.std
            if mean is None or std is None:
                warnings.warn("run.json: standardize without mean/std and no training data; assuming x/255")
                return cls("scale")
            return cls("standardize", mean, std)
        if mode not in ("scale", "rescale", "divide", "/255"):
            warnings.warn(f"run.json: unrecognised preprocessing mode {mode!r}; assuming x/255")
        return cls("scale", scale=None if scale is None else float(scale))

    def __call__(self, x):
        x = np.asarray(x, dtype=floatx)
        if self.mode == "none":
            return x
        if self.mode == "standardize":
            return (x - self.mean) / self.std
        return x * np.float32(self.scale if self.scale is not None else 1 / 255)

    def __repr__(self):
        return f"Preprocess({self.mode!r})"


def _data_name(config):
    for key in ("data", "dataset", "data_name"):
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("name") or v.get("path") or v.get("dataset")
        if v:
            return str(v)
    return None


def _preprocessing_spec(config):
    for key in ("preprocessing", "preprocess", "normalize", "normalization"):
        if key in config:
            return config[key]
    data = config.get("data")
    if isinstance(data, dict):
        for key in ("preprocessing", "normalize"):
            if key in data:
                return data[key]
    return None


def load_run(run_dir, load_data=True):
    """``(model, run_config, dataset or None)`` for a run directory.

    ``run_config`` is run.json's content (``{}`` when missing) with these keys filled in:
    ``data`` (a data set name, or None), ``class_names``, ``preprocess`` (a ``Preprocess``).
    Without run.json the data set is guessed from the model's input shape (8x8x1: digits)
    and the preprocessing is x/255. A data set that cannot be loaded offline, or whose
    images do not fit the model, gives ``None`` and a warning.
    """
    from ..training.checkpoint import load_checkpoint, read_run_config
    run_dir = os.fspath(run_dir)
    model, state = load_checkpoint(run_dir)
    config = dict(read_run_config(run_dir))
    input_shape = tuple(model.input_shape[1:])
    name = _data_name(config)
    if name is None:
        name = _BY_SHAPE.get(input_shape)
        config["data_guessed"] = name is not None
    dataset = None
    if load_data and name is not None:
        from .. import datasets
        try:
            dataset = datasets.load(name, download=False)
        except Exception as e:  # noqa: BLE001 - any failure: draw what needs no data
            warnings.warn(f"could not load data set {name!r} offline ({e}); pictures that need data are skipped")
        if dataset is not None and tuple(dataset.x_test.shape[1:]) != input_shape:
            warnings.warn(f"data set {name!r} images {dataset.x_test.shape[1:]} do not fit the model input "
                          f"{input_shape}; ignoring it")
            dataset = None
    config["data"] = name
    n_out = model.output_shape[-1]
    names = config.get("class_names") or (dataset.class_names if dataset is not None else None)
    if not names or len(names) != n_out:
        names = [str(i) for i in range(n_out)]
    config["class_names"] = list(names)
    config["preprocess"] = Preprocess.from_config(_preprocessing_spec(config),
                                                  None if dataset is None else dataset.x_train)
    config["training_state"] = state
    return model, config, dataset


def load_image(path, model):
    """A uint8 (H, W, C) image from a file, converted and resized to the model's input."""
    from PIL import Image
    _, H, W, C = model.input_shape
    with Image.open(path) as im:
        im = im.convert("L" if C == 1 else "RGB")
        if im.size != (W, H):
            im = im.resize((W, H), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a

"""Small helpers shared across the package."""
import difflib
import re

from .random import set_random_seed  # noqa: F401  (re-exported, as keras.utils does)


def snake_case(name):
    """Keras's rule: ``Conv2D -> conv2d``, ``MaxPooling2D -> max_pooling2d``."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def closest(name, choices):
    """`` (did you mean 'x'?)`` or an empty string."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_name_error(kind, name, choices):
    return ValueError(f"Unknown {kind}: {name!r}{closest(name, choices)}. Known: {', '.join(sorted(choices))}")


class Serializable:
    """``get_config``/``from_config``/``repr`` for objects that round-trip through a config dict."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def serialize(obj):
    """``{"class_name": ..., "config": {...}}``, Keras's form for initializers, layers, schedules..."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


def deserialize(config, registry, kind, suggestions=None):
    """The object a ``serialize`` dict describes; an unknown class name gets the closest suggested."""
    name = config.get("class_name")
    if name not in registry:
        raise unknown_name_error(kind, name, suggestions if suggestions is not None else registry)
    return registry[name].from_config(dict(config.get("config") or {}))

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

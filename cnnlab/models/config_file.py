"""Model configuration files (TOML or YAML) for the command line.

A file describes a ``Sequential`` stack, with the same fields as the layers' ``get_config``::

    name = "small_cnn"                    # optional
    input_shape = [8, 8, 1]               # (height, width, channels)

    [[layers]]
    class_name = "Conv2D"                 # or: type = "Conv2D"
    filters = 16
    kernel_size = 3
    activation = "relu"

    [[layers]]
    type = "Flatten"

    [[layers]]
    type = "Dense"
    units = 10
    activation = "softmax"

    [compile]                             # optional
    optimizer = "adam"                    # a name, or {class_name = "Adam", config = {...}}
    lr = 0.003
    loss = "sparse_categorical_crossentropy"
    metrics = ["accuracy"]

    [train]                               # optional
    batch_size = 32
    epochs = 10
    augment = "shift:1"
    data = "digits"

A layer's arguments may also sit in a ``config`` table, as ``get_config`` writes them. Layers
with ``inbound`` (names of the layers feeding them) plus top-level ``input_layers`` and
``output_layers`` make a functional graph (residual blocks). Unknown layers, layer arguments
and keys fail with the closest name suggested.
"""
import json
import os

from ..utils import closest

TOP_KEYS = ("name", "input_shape", "layers", "compile", "train", "input_layers", "output_layers", "class_name")
COMPILE_KEYS = ("optimizer", "lr", "learning_rate", "loss", "metrics")
TRAIN_KEYS = ("batch_size", "epochs", "augment", "data", "dataset", "validation_split", "seed", "optimizer", "lr",
              "learning_rate")


def _format(path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext == ".toml":
        return "toml"
    if ext in (".yaml", ".yml"):
        return "yaml"
    raise ValueError(f"{path}: unknown configuration format {ext!r}; use .toml, .yaml or .yml")


def read_config_file(path):
    """The file's content as a dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model configuration file")
    fmt = _format(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        if fmt == "toml":
            import tomllib
            content = tomllib.loads(data.decode("utf-8"))
        else:
            import yaml
            content = yaml.safe_load(data.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - tomllib/yaml error types
        raise ValueError(f"{path}: not valid {fmt.upper()} ({e})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level")
    return content


def _check_keys(where, given, allowed):
    for key in given:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}{closest(key, allowed)}. Known: {', '.join(allowed)}")


def _layer_entry(path, i, entry):
    """``{"class_name", "config"}`` (plus ``inbound``) from a file's layer table."""
    where = f"{path}: layers[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a table, received {entry!r}")
    entry = dict(entry)
    name = entry.pop("class_name", None) or entry.pop("type", None)
    entry.pop("class_name", None)
    if not name:
        raise ValueError(f"{where}: no 'class_name' (or 'type') naming the layer")
    config = dict(entry.pop("config", None) or {})
    inbound = entry.pop("inbound", None)
    config.update(entry)
    out = {"class_name": str(name), "config": config}
    if inbound is not None:
        out["inbound"] = [inbound] if isinstance(inbound, str) else list(inbound)
    return out


def _unknown_argument(entry):
    """The first argument the layer class does not take, with a suggestion, or None."""
    import inspect
    from ..layers import LAYERS, Layer
    cls = LAYERS.get(entry["class_name"])
    if cls is None:
        return None
    allowed = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        allowed |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")}
        if klass is Layer:
            break
    for key in entry["config"]:
        if key not in allowed:
            return (f"{entry['class_name']}: unknown argument {key!r}{closest(key, allowed)}. "
                    f"Allowed: {', '.join(sorted(allowed))}")
    return None


def _build_layer(path, i, entry):
    from ..layers import deserialize
    try:
        return deserialize(entry)
    except TypeError as e:
        unknown = _unknown_argument(entry)  # a misspelt argument also leaves a required one missing
        if unknown and "unknown argument" not in str(e):
            e = unknown
        raise TypeError(f"{path}: layers[{i}] ({entry['class_name']}): {e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: layers[{i}] ({entry['class_name']}): {e}") from None


def model_from_dict(content, path="<config>"):
    """``(model, train_overrides)`` from a parsed configuration dict."""
    from ..layers import Input
    from .model import Model, Sequential
    _check_keys(path, content, TOP_KEYS)
    layers = content.get("layers")
    if not layers or not isinstance(layers, list):
        raise ValueError(f"{path}: no layers; add [[layers]] tables (TOML) or a `layers:` list (YAML)")
    entries = [_layer_entry(path, i, e) for i, e in enumerate(layers)]
    shape = content.get("input_shape")
    if shape is not None:
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(f"{path}: input_shape must be a list of positive integers, e.g. [28, 28, 1]; "
                             f"received {shape!r}")
    name = content.get("name")
    if any("inbound" in e for e in entries) or content.get("input_layers"):
        model = _functional(path, content, entries, shape, name)
    else:
        model = Sequential(name=name)
        if shape is not None:
            model.add(Input(tuple(shape)))
        for i, e in enumerate(entries):
            layer = _build_layer(path, i, e)
            try:
                model.add(layer)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}: layers[{i}] ({e['class_name']}): {err}") from None
    overrides = {}
    for section, allowed in (("compile", COMPILE_KEYS), ("train", TRAIN_KEYS)):
        values = content.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: [{section}] must be a table")
        _check_keys(f"{path}: [{section}]", values, allowed)
        overrides.update(values)
    if "learning_rate" in overrides:
        overrides.setdefault("lr", overrides.pop("learning_rate"))
    if "dataset" in overrides:
        overrides.setdefault("data", overrides.pop("dataset"))
    return model, overrides


def _functional(path, content, entries, shape, name):
    from ..layers import InputLayer, SymbolicTensor
    from .model import Model
    tensors, order = {}, []
    if shape is not None and not any(e["class_name"] == "InputLayer" for e in entries):
        first = InputLayer(shape=tuple(shape), name="input")
        tensors[first.name] = SymbolicTensor(first.batch_input_shape, first, ())
    previous = next(iter(tensors), None)
    for i, e in enumerate(entries):
        layer = _build_layer(path, i, e)
        if isinstance(layer, InputLayer):
            tensors[layer.name] = SymbolicTensor(layer.batch_input_shape, layer, ())
            previous = layer.name
            continue
        inbound = e.get("inbound") or ([previous] if previous else [])
        missing = [n for n in inbound if n not in tensors]
        if missing or not inbound:
            raise ValueError(f"{path}: layers[{i}] ({e['class_name']}): inbound {missing or inbound} "
                             f"names no earlier layer{closest(missing[0], tensors) if missing else ''}")
        ins = [tensors[n] for n in inbound]
        try:
            tensors[layer.name] = layer(ins if layer.multi_input else ins[0])
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: layers[{i}] ({e['class_name']}): {err}") from None
        previous = layer.name
    inputs = content.get("input_layers") or [n for n, t in tensors.items() if not t.inbound][:1]
    outputs = content.get("output_layers") or [previous]
    for n in list(inputs) + list(outputs):
        if n not in tensors:
            raise ValueError(f"{path}: no layer named {n!r}{closest(n, tensors)}")
    return Model([tensors[n] for n in inputs], [tensors[n] for n in outputs], name=name)


def load_config_file(path):
    """``(model, train_overrides)``: an uncompiled model and the ``[compile]``/``[train]`` settings."""
    return model_from_dict(read_config_file(path), os.fspath(path))


def _plain(value):
    """JSON-like values, tuples as lists, for both writers."""
    return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def model_to_dict(model, train=None):
    from .model import Sequential
    config = _plain(model.get_config())
    out = {"name": config.get("name")}
    shape = model.input_shape
    if isinstance(model, Sequential):
        if shape is not None and model.built:
            out["input_shape"] = list(shape[1:])
        layers = config["layers"]
        out["layers"] = [{"class_name": l["class_name"], **l["config"]} for l in layers]
    else:
        out["input_layers"] = config["input_layers"]
        out["output_layers"] = config["output_layers"]
        out["layers"] = []
        for l in config["layers"]:
            entry = {"class_name": l["class_name"], **l["config"], "name": l["name"]}
            if "batch_input_shape" in entry:  # TOML has no null: write the shape without the batch axis
                entry["shape"] = entry.pop("batch_input_shape")[1:]
            if l.get("inbound"):
                entry["inbound"] = l["inbound"]
            out["layers"].append(entry)
    if model.compiled:
        from .saving import compile_config
        c = _plain(compile_config(model))
        out["compile"] = {"optimizer": c["optimizer"], "loss": c["loss"],
                          "metrics": [m.get("name", m) if isinstance(m, dict) and len(m) == 1 else m
                                      for m in c["metrics"]]}
    if train:
        out["train"] = _plain(train)
    return out


def save_config_file(model, path, train=None):
    """Write ``model``'s architecture (and compile settings, and ``train`` if given) as TOML or YAML."""
    fmt = _format(path)
    content = model_to_dict(model, train)
    if fmt == "toml":
        text = _to_toml(content)
    else:
        import yaml
        text = yaml.safe_dump(content, sort_keys=False, default_flow_style=None)
    from ..io import atomic_write_bytes
    atomic_write_bytes(path, text.encode("utf-8"))


# ----- a small TOML writer (tomllib only reads) ---------------------------------------------
def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise ValueError(f"cannot write {v!r} to TOML")


def _toml_key(k):
    k = str(k)
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _toml_table(d):
    return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.items() if v is not None]


def _to_toml(content):
    lines = []
    for k, v in content.items():
        if k in ("layers", "compile", "train") or v is None:
            continue
        lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for layer in content["layers"]:
        lines += ["", "[[layers]]"] + _toml_table(layer)
    for section in ("compile", "train"):
        if content.get(section):
            lines += ["", f"[{section}]"] + _toml_table(content[section])
    return "\n".join(lines) + "\n"

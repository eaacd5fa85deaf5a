"""The ``cnnlab`` command: train, evaluate, predict, summary, datasets (and visualize/report).

Errors print one line (``cnnlab: error: ...``) and exit with 2 for bad arguments or input,
1 for other failures; Ctrl-C during training exits with 130 after saying how to resume.
``--json`` makes train/evaluate/predict print one JSON object as the last line of stdout.
"""
import argparse
import contextlib
import datetime
import json
import os
import sys
import time

import numpy as np

DEFAULT_MODEL = "digits_small"
PREPROCESSING = {"mode": "scale", "scale": 1 / 255}  # uint8 -> float32 in [0, 1]


class UsageError(ValueError):
    """Bad arguments or input: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        command = self.prog.split()[-1] if " " in self.prog else None
        raise UsageError(f"{command}: {message}" if command else message)


# ----- helpers ----------------------------------------------------------------------------------
def _preprocess(x, spec=None):
    spec = spec or PREPROCESSING
    mode = spec.get("mode", "scale") if isinstance(spec, dict) else str(spec)
    if mode == "none":
        return np.asarray(x, dtype=np.float32)
    if mode != "scale":
        raise UsageError(f"run.json: unsupported preprocessing {spec!r}")
    scale = spec.get("scale", 1 / 255) if isinstance(spec, dict) else 1 / 255
    return np.asarray(x, dtype=np.float32) * np.float32(scale)


def _load_data(name_or_path):
    from . import datasets
    return datasets.load(name_or_path)


def _data_ref(name_or_path):
    """What run.json records: a data set name, or an absolute path."""
    from .datasets import NAMES
    key = str(name_or_path).strip().lower().replace("-", "_")
    if key in NAMES or not os.path.exists(name_or_path):
        return str(name_or_path)
    return os.path.abspath(name_or_path)


def _check_fits(model, ds):
    want = tuple(model.input_shape[1:])
    if tuple(ds.x_train.shape[1:]) != want:
        raise UsageError(f"data set {ds.name!r} has images of shape {tuple(ds.x_train.shape[1:])}, the model "
                         f"expects {want}")
    if model.output_shape[-1] != ds.num_classes:
        raise UsageError(f"data set {ds.name!r} has {ds.num_classes} classes, the model has "
                         f"{model.output_shape[-1]} outputs")


def _optimizer_config(base, name=None, lr=None):
    if isinstance(base, str):
        base = {"class_name": base, "config": {}}
    config = {"class_name": base["class_name"], "config": dict(base.get("config") or {})} if base else \
        {"class_name": "Adam", "config": {}}
    if name is not None:
        from . import optimizers
        optimizers.get(name)  # unknown names: a suggestion
        config = {"class_name": name, "config": {}}
    if lr is not None:
        if not lr > 0:
            raise UsageError(f"--lr must be > 0, received {lr}")
        config["config"]["learning_rate"] = float(lr)
    return config


def _default_run_dir(model_name, data_name):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    data = os.path.basename(os.path.normpath(str(data_name)))
    base = os.path.join("runs", f"{model_name}-{data}-{stamp}")
    path, i = base, 1
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def _emit_json(obj):
    print(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)), flush=True)


def _test_metrics(model, ds, spec, batch_size=256):
    from .training import evaluate
    x = _preprocess(ds.x_test, spec)
    result = evaluate(model, x, ds.y_test, batch_size=batch_size)
    return result, x


def read_run_config_or_fail(run_dir):
    from .training.checkpoint import read_run_config
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    config = read_run_config(run_dir)
    if not config:
        raise UsageError(f"{run_dir}: no run.json; not a run directory written by `cnnlab train`")
    return config


def _interrupted(run_dir):
    from .training import latest_checkpoint
    try:
        path = latest_checkpoint(run_dir)
        print(f"\ncnnlab: interrupted. The last good checkpoint is {path}; resume with: "
              f"cnnlab train --resume {run_dir}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - no checkpoint yet
        print(f"\ncnnlab: interrupted before the first checkpoint; nothing to resume in {run_dir}",
              file=sys.stderr)
    return 130


# ----- train ------------------------------------------------------------------------------------
def cmd_train(args):
    if args.resume:
        return _train_resume(args)
    from . import zoo
    from .datasets import augment as augment_mod
    from .io import atomic_write_json
    from .training import fit

    from .random import set_random_seed
    set_random_seed(args.seed if args.seed is not None else 0)  # initial weights and dropout draw from here
    if args.config:
        from .models.config_file import load_config_file
        model, over = load_config_file(args.config)
        model_name = model.name or os.path.splitext(os.path.basename(args.config))[0]
        recipe = None
    else:
        recipe = zoo.get(args.model or DEFAULT_MODEL)
        model_name, over = recipe.name, {}
    data = args.data or over.get("data") or (recipe.dataset if recipe else "digits")
    ds = _load_data(data)
    epochs = args.epochs if args.epochs is not None else over.get("epochs", recipe.epochs if recipe else 10)
    batch_size = args.batch_size if args.batch_size is not None else \
        over.get("batch_size", recipe.batch_size if recipe else 32)
    if epochs < 1 or batch_size < 1:
        raise UsageError(f"--epochs and --batch-size must be >= 1 (received {epochs}, {batch_size})")
    aug_spec = args.augment if args.augment is not None else over.get("augment", recipe.augment if recipe else None)
    augment = augment_mod.parse(aug_spec) if aug_spec else None
    seed = args.seed if args.seed is not None else over.get("seed", 0)
    val_split = args.validation_split if args.validation_split is not None else over.get("validation_split", 0.0)
    n_train = len(ds.x_train) - int(len(ds.x_train) * (val_split or 0))
    steps = -(-n_train // batch_size)
    if recipe is not None:
        model = recipe.build(ds.input_shape, ds.num_classes)
        base_opt = recipe.optimizer_config(steps, epochs)
        loss, metrics = recipe.loss, list(recipe.metrics)
    else:
        base_opt = over.get("optimizer") or "adam"
        loss = over.get("loss", "sparse_categorical_crossentropy")
        metrics = over.get("metrics", ["accuracy"])
    if model.built:
        _check_fits(model, ds)
    opt = _optimizer_config(base_opt, args.optimizer, args.lr if args.lr is not None else over.get("lr"))
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    model._prepare_inputs(ds.x_train[:1].astype(np.float32))  # builds a config file's lazy stack
    _check_fits(model, ds)
    _use_processes(model, args.processes)

    run_dir = args.out or _default_run_dir(model_name, data)
    os.makedirs(run_dir, exist_ok=True)
    from .models.saving import model_config
    atomic_write_json(os.path.join(run_dir, "run.json"), {
        "model": None if args.config else model_name,
        "config_file": os.path.abspath(args.config) if args.config else None,
        "model_config": model_config(model),
        "data": _data_ref(data), "data_source": ds.source,
        "preprocessing": PREPROCESSING, "class_names": list(ds.class_names),
        "input_shape": list(ds.input_shape), "num_classes": ds.num_classes,
        "train": {"epochs": epochs, "batch_size": batch_size, "optimizer": opt, "loss": loss, "metrics": metrics,
                  "augment": aug_spec, "seed": seed, "validation_split": val_split},
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    })
    if args.verbose:
        print(f"Training {model_name} on {ds.name} ({len(ds.x_train)} images) for {epochs} epochs; "
              f"run directory {run_dir}")
    x = _preprocess(ds.x_train)
    start = time.perf_counter()
    try:
        history = fit(model, x, ds.y_train, batch_size=batch_size, epochs=epochs, verbose=args.verbose,
                      validation_split=val_split or 0.0, augment=augment, seed=seed, run_dir=run_dir)
    except KeyboardInterrupt:
        return _interrupted(run_dir)
    return _finish_train(args, model, ds, run_dir, history, time.perf_counter() - start, model_name)


@contextlib.contextmanager
def _processes_usage(n):
    """Within the block, a model that cannot train over ``n`` processes is a usage error."""
    from .training.processes import CannotSplit
    try:
        yield
    except CannotSplit as e:
        raise UsageError(f"--processes {n}: {e}") from None


def _use_processes(model, n):
    if n != 1:
        with _processes_usage(n):
            model.use_processes(n)


def _train_resume(args):
    from .training import resume
    if args.model or args.config or args.data or args.batch_size is not None or args.optimizer \
            or args.lr is not None or args.seed is not None \
            or args.augment is not None or args.out or args.validation_split is not None:
        raise UsageError("--resume continues a run with its own settings; only --epochs, --verbose, "
                         "--processes and --json may be given with it")
    run_dir = args.resume
    config = read_run_config_or_fail(run_dir)
    ds = _load_data(config.get("data") or "digits")
    epochs = args.epochs if args.epochs is not None else (config.get("train") or {}).get("epochs")
    x = _preprocess(ds.x_train, config.get("preprocessing"))
    start = time.perf_counter()
    try:
        with _processes_usage(args.processes):
            model, history = resume(run_dir, x, ds.y_train, epochs=epochs, verbose=args.verbose,
                                    processes=args.processes)
    except KeyboardInterrupt:
        return _interrupted(run_dir)
    name = config.get("model") or (config.get("model_config") or {}).get("config", {}).get("name", "model")
    return _finish_train(args, model, ds, run_dir, history, time.perf_counter() - start, name,
                         config.get("preprocessing"))


def _finish_train(args, model, ds, run_dir, history, seconds, model_name, spec=None):
    result, _ = _test_metrics(model, ds, spec)
    acc = result.get("accuracy")
    print(f"Test accuracy: {acc:.4f} - test loss: {result['loss']:.4f} ({len(ds.x_test)} images, "
          f"{seconds:.1f} s training); run directory: {run_dir}")
    if args.json:
        _emit_json({"test_accuracy": acc, "test_loss": result["loss"], "run_dir": run_dir, "model": model_name,
                    "data": ds.name, "epochs": len(history.epoch) and history.epoch[-1] + 1,
                    "seconds": round(seconds, 3),
                    "history": {k: v[-1] for k, v in history.history.items()}})
    return 0


# ----- evaluate ---------------------------------------------------------------------------------
def _load_run_model(run_dir, best=False):
    from .models import load_model
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    path = os.path.join(run_dir, "best") if best else run_dir
    return load_model(path)


def cmd_evaluate(args):
    from .metrics import classification_report, confusion_matrix
    config = read_run_config_or_fail(args.run_dir)
    model = _load_run_model(args.run_dir, args.best)
    ds = _load_data(args.data or config.get("data") or "digits")
    _check_fits(model, ds)
    result, x = _test_metrics(model, ds, config.get("preprocessing"), args.batch_size)
    probs = model.predict(x, batch_size=args.batch_size)
    names = config.get("class_names") or list(ds.class_names)
    cm = confusion_matrix(ds.y_test, probs, num_classes=model.output_shape[-1])
    print(f"{args.run_dir}: {ds.name} test set, {len(x)} images")
    print(f"loss: {result['loss']:.4f} - accuracy: {result.get('accuracy', float('nan')):.4f}")
    tta = None
    if args.tta_flip or args.tta_shift:
        from .training import predict_tta, tta_views
        tta_probs = predict_tta(model, x, flip=args.tta_flip, shift=args.tta_shift, batch_size=args.batch_size)
        tta = float((tta_probs.argmax(-1) == np.asarray(ds.y_test)).mean())
        print(f"accuracy averaged over {len(tta_views(args.tta_flip, args.tta_shift))} test-time views: {tta:.4f}")
    print()
    print(classification_report(ds.y_test, probs, class_names=names, num_classes=len(cm)))
    print()
    print("Confusion matrix (rows: true class, columns: predicted):")
    width = max(max(len(str(n)) for n in names), len(str(int(cm.max()))) + 1, 4)
    print(" " * width + " " + " ".join(f"{str(n)[:width]:>{width}}" for n in names))
    for n, row in zip(names, cm):
        print(f"{str(n)[:width]:>{width}} " + " ".join(f"{v:>{width}d}" for v in row))
    if args.json:
        _emit_json({"test_accuracy": result.get("accuracy"), "test_accuracy_tta": tta,
                    "test_loss": result["loss"], "run_dir": args.run_dir,
                    "data": ds.name, "class_names": names, "confusion_matrix": cm.tolist()})
    return 0


# ----- predict ----------------------------------------------------------------------------------
def load_image(path, model):
    """A uint8 (H, W, C) array: the image converted to the model's channels and resized to its input."""
    from PIL import Image, UnidentifiedImageError
    _, h, w, c = model.input_shape
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image Pillow can read") from None
    if c not in (1, 3):
        raise UsageError(f"the model expects {c} channels; only 1 (grey) and 3 (RGB) images are supported")
    return a[..., None] if a.ndim == 2 else a


def cmd_predict(args):
    config = read_run_config_or_fail(args.run_dir)
    model = _load_run_model(args.run_dir, args.best)
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, received {args.top_k}")
    raw = np.stack([load_image(p, model) for p in args.images])
    probs = model.predict(_preprocess(raw, config.get("preprocessing")))
    n = probs.shape[-1]
    names = config.get("class_names") or [str(i) for i in range(n)]
    k = min(args.top_k, n)
    out = []
    for path, p in zip(args.images, probs):
        top = np.argsort(-p, kind="stable")[:k]
        entries = [{"class": str(names[i]), "index": int(i), "probability": float(p[i])} for i in top]
        out.append({"image": path, "top_k": entries})
        print(f"{path}: " + ", ".join(f"{e['class']} ({e['probability']:.4f})" for e in entries))
    if args.json:
        _emit_json({"run_dir": args.run_dir, "predictions": out})
    return 0


# ----- summary, datasets ------------------------------------------------------------------------
def cmd_summary(args):
    if sum(x is not None for x in (args.model, args.config, args.run_dir)) != 1:
        raise UsageError("summary: give exactly one of --model NAME, --config FILE or RUN_DIR")
    if args.model:
        from . import zoo
        model = zoo.get(args.model).build()
    elif args.config:
        from .models.config_file import load_config_file
        model, _ = load_config_file(args.config)
        if not model.built:
            raise UsageError(f"{args.config}: no input_shape, so the model cannot be built for a summary")
    else:
        from .models import load_model
        if not os.path.exists(args.run_dir):
            raise FileNotFoundError(f"{args.run_dir}: no such run directory or saved model")
        model = load_model(args.run_dir, compile=False)
    model.summary()
    return 0


def cmd_datasets(args):
    from .datasets import report
    rows = report()
    status = {True: "checksums ok", False: "CHECKSUM MISMATCH", None: "not verified"}
    for r in rows:
        where = r["found_at"] or "not found (downloaded on first use)"
        state = status[r["checksum_ok"]] if r["found_at"] else "-"
        print(f"{r['name']:<14} {state:<18} {where}")
    if args.json:
        _emit_json({"datasets": rows})
    return 0


# ----- parser -----------------------------------------------------------------------------------
def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, received {text!r}")
    return value


def build_parser():
    p = _Parser(prog="cnnlab", description="Train, evaluate and inspect convolutional networks.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model (default: digits_small on the offline digits set)",
                       description="Train a zoo model or a TOML/YAML configuration; checkpoints go to a run "
                                   "directory. Defaults come from the model's recipe.")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help=f"a zoo model (default {DEFAULT_MODEL})")
    src.add_argument("--config", metavar="FILE", help="a model configuration file (.toml, .yaml)")
    t.add_argument("--data", metavar="NAME|PATH", help="a data set name or directory (default: the recipe's)")
    t.add_argument("--epochs", type=int, metavar="N")
    t.add_argument("--batch-size", type=int, metavar="N")
    t.add_argument("--optimizer", metavar="NAME", help="sgd, adam, adamw, rmsprop, adagrad, adadelta")
    t.add_argument("--lr", type=float, metavar="X", help="learning rate")
    t.add_argument("--augment", metavar="SPEC", help='e.g. "shift:1,flip:horizontal" or "affine:10:0.1:0.1" '
                   '(degrees, zoom, translate[, shear]); "none" for none')
    t.add_argument("--seed", type=int, metavar="N", help="random seed (default 0)")
    t.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<model>-<data>-<time>)")
    t.add_argument("--validation-split", type=float, metavar="F", help="fraction held out from the end")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest good checkpoint")
    t.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    t.add_argument("--processes", type=int, choices=(1, 2), default=1,
                   help="2: split each training step over two processes of one thread each, for small "
                        "models on two cores; 1: threads")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test loss, accuracy, per-class report and confusion matrix",
                       description="Evaluate a run's latest good checkpoint on the test set.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--data", metavar="NAME|PATH", help="data set (default: the run's)")
    e.add_argument("--best", action="store_true", help="use RUN_DIR/best instead of the latest checkpoint")
    e.add_argument("--batch-size", type=int, default=256, metavar="N")
    e.add_argument("--tta-flip", action="store_true",
                   help="also report the accuracy averaged with each image's mirror image (not for digits)")
    e.add_argument("--tta-shift", type=_nonnegative_int, default=0, metavar="PIXELS",
                   help="also average over copies moved PIXELS up, down, left and right")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="top-k classes for image files",
                        description="Classify PNG/JPEG images with a run's model.")
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--top-k", type=int, default=3, metavar="K")
    pr.add_argument("--best", action="store_true", help="use RUN_DIR/best instead of the latest checkpoint")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    s = sub.add_parser("summary", help="a model's summary table",
                       description="Print the summary of a zoo model, a configuration file or a run's model.")
    s.add_argument("run_dir", nargs="?", metavar="RUN_DIR")
    s.add_argument("--model", metavar="NAME")
    s.add_argument("--config", metavar="FILE")
    s.set_defaults(func=cmd_summary)

    d = sub.add_parser("datasets", help="where each data set was found and its checksum status",
                       description="List the data sets, where they were found and whether checksums verify.")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_datasets)

    try:
        from .viz.cli import add_subcommands
    except ImportError:
        add_subcommands = None
    if add_subcommands is not None:
        add_subcommands(sub)
    return p


def main(argv=None):
    from .datasets import DatasetNotFoundError
    from .io import CorruptFileError
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        status = args.func(args)
        return 0 if status is None else int(status)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print("\ncnnlab: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError, TypeError, CorruptFileError, DatasetNotFoundError) as e:
        print(f"cnnlab: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line, no traceback
        print(f"cnnlab: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1


def _one_line(e):
    text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())

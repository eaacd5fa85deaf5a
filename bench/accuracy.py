"""Train a zoo recipe on a dataset, record the result, regenerate BENCHMARKS.md.

    python bench/accuracy.py seed001 --data ../shared/data/mnist
    python bench/accuracy.py fashion_best --data fashion_mnist --epochs 20

Each run appends one JSON file to ``bench/results/`` with the keys ``recipe``,
``dataset``, ``epochs``, ``test_accuracy`` (after the last epoch, on the
official test set), ``best_epoch`` (the epoch with the highest test accuracy,
for information: the reported number is the last epoch's, not a pick on the
test set), ``wall_seconds``, ``cores``, ``seed`` and ``version``. For a recipe
with test-time augmentation (``test_time_flip``, ``test_time_shift``),
``test_accuracy`` averages the outputs over the views of each test image after
the last epoch (``cnnlab.training.predict_tta``); ``test_accuracy_single_view``
and the per-epoch numbers are without it.
``python bench/accuracy.py --table`` only regenerates BENCHMARKS.md.
"""
import argparse
import datetime
import glob
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab import zoo  # noqa: E402
from cnnlab.datasets import augment as augment_mod  # noqa: E402
from cnnlab.datasets import load  # noqa: E402
from cnnlab.ops import threads  # noqa: E402
from cnnlab.random import set_random_seed  # noqa: E402
from cnnlab.training import predict_tta, tta_views  # noqa: E402
from cnnlab.training.callbacks import Callback  # noqa: E402

RESULTS = os.path.join(HERE, "results")

# The targets of issue 4 on a 2-core machine: (recipe, dataset) -> (accuracy, minutes or None).
TARGETS = {
    ("seed001", "mnist"): (0.990, None),
    ("seed001_fixed", "mnist"): (0.990, None),
    ("seed001_bn", "mnist"): (0.994, None),
    ("seed001_bn_fixed", "mnist"): (0.994, None),
    ("mnist_best", "mnist"): (0.996, 15),
    ("seed002", "fashion_mnist"): (0.915, None),
    ("fashion_best", "fashion_mnist"): (0.94, 30),
}


class TestEachEpoch(Callback):
    """Test accuracy after every epoch; with test-time augmentation (``flip``, ``shift``), the last
    epoch's is also measured averaged over the views of each image (``tta_accuracy``), which is the
    recipe's reported number."""

    def __init__(self, x, y, flip=False, shift=0):
        super().__init__()
        self.x, self.y, self.flip, self.shift = x, y, flip, shift
        self.accuracies, self.tta_accuracy = [], None

    def _accuracy(self, out):
        return float((out.argmax(-1) == self.y).mean())

    def on_epoch_end(self, epoch, logs=None):
        acc = self._accuracy(self.model.predict(self.x, batch_size=500))
        self.accuracies.append(acc)
        print(f"  epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)

    def on_train_end(self, logs=None):
        if self.flip or self.shift:
            out = predict_tta(self.model, self.x, flip=self.flip, shift=self.shift, batch_size=500)
            self.tta_accuracy = self._accuracy(out)
            print(f"  test accuracy averaged over {len(tta_views(self.flip, self.shift))} views "
                  f"{self.tta_accuracy:.4f}", flush=True)


def run(recipe_name, data, epochs=None, seed=0, batch_size=None, out_dir=None, augment=None):
    recipe = zoo.get(recipe_name)
    ds = load(data)
    x_train, x_test = ds.x_train.astype(np.float32) / 255, ds.x_test.astype(np.float32) / 255
    set_random_seed(seed)
    batch_size = batch_size or recipe.batch_size
    epochs = epochs or recipe.epochs
    steps = -(-len(x_train) // batch_size)
    model = recipe.compiled(input_shape=x_train.shape[1:], num_classes=len(ds.class_names),
                            steps_per_epoch=steps, epochs=epochs)
    tester = TestEachEpoch(x_test, ds.y_test.astype(np.int64), flip=recipe.test_time_flip,
                           shift=recipe.test_time_shift)
    augment_spec = recipe.augment if augment is None else augment
    augment = augment_mod.parse(augment_spec) if augment_spec else None
    start = time.perf_counter()
    model.fit(x_train, ds.y_train.astype(np.int64), batch_size=batch_size, epochs=epochs, verbose=2,
              callbacks=[tester], augment=augment, seed=seed, run_dir=out_dir)
    wall = time.perf_counter() - start
    row = {"recipe": recipe_name, "dataset": ds.name, "data_arg": data, "epochs": epochs,
           "test_accuracy": tester.accuracies[-1] if tester.tta_accuracy is None else tester.tta_accuracy,
           "test_accuracy_single_view": tester.accuracies[-1],
           "best_epoch": int(np.argmax(tester.accuracies)) + 1,
           "per_epoch_test_accuracy": tester.accuracies, "wall_seconds": round(wall, 1),
           "cores": len(os.sched_getaffinity(0)), "threads": threads.num_threads(), "seed": seed, "version": cnnlab.__version__,
           "batch_size": batch_size, "augment": augment_spec, "test_time_flip": recipe.test_time_flip,
           "test_time_shift": recipe.test_time_shift,
           "claim": recipe.claim,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(RESULTS, f"{recipe_name}-{ds.name}-{stamp}.json"), "w") as f:
        json.dump(row, f, indent=2)
    return row


README_START, README_END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"


def _tta_label(flip, shift):
    views = (["flip"] if flip else []) + ([f"{shift}-px shifts"] if shift else [])
    return f" (+ test-time {' and '.join(views)})" if views else ""


def write_table():
    """Regenerate BENCHMARKS.md, and the table between README's accuracy markers."""
    rows = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    lines = ["# Accuracy benchmarks", "",
             "Generated by `bench/accuracy.py` from `bench/results/*.json`; every row is one run on a "
             "2-core CPU machine (`cores` = CPU cores the process could use), accuracy on the official test set "
             "after the last epoch (averaged over test-time views where the augment column says so; the "
             "JSON rows keep the single-view accuracy too).", "",
             "| recipe | dataset | epochs | augment | test accuracy | seed's claim | target | met | wall time | cores | "
             "command |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        r["dataset"] = r["dataset"].replace("-", "_")  # a folder's name (fashion-mnist) is the catalog's set
        target = TARGETS.get((r["recipe"], r["dataset"]))
        if target:
            acc_t, minutes = target
            ok = r["test_accuracy"] >= acc_t and (minutes is None or r["wall_seconds"] <= minutes * 60)
            target_s = f">= {acc_t:.1%}" + (f" in <= {minutes} min" if minutes else "")
            met = "yes" if ok else "**no**"
        else:
            target_s, met = "-", "-"
        cmd = f"python bench/accuracy.py {r['recipe']} --data {r.get('data_arg', r['dataset'])} --epochs {r['epochs']}"
        if r["recipe"] in zoo.RECIPES and (r.get("augment") or None) != (zoo.get(r["recipe"]).augment or None):
            cmd += f" --augment {r.get('augment') or 'none'}"
        if r.get("seed", 0) != 0:
            cmd += f" --seed {r['seed']}"
        cmd = f"`{cmd}`"
        aug = (r.get("augment") or "-") + _tta_label(r.get("test_time_flip"), r.get("test_time_shift"))
        lines.append(f"| {r['recipe']} | {r['dataset']} | {r['epochs']} | {aug} | "
                     f"{r['test_accuracy']:.2%} | "
                     f"{r.get('claim') or '-'} | {target_s} | {met} | {r['wall_seconds'] / 60:.1f} min | {r['cores']} | {cmd} |")
    missing = [f"{rec} on {ds}" for (rec, ds) in TARGETS
               if not any(r["recipe"] == rec and r["dataset"] == ds for r in rows)]
    if missing:
        lines += ["", "Not yet measured: " + ", ".join(missing) + "."]
    notes_path = os.path.join(HERE, "accuracy_notes.md")
    if os.path.isfile(notes_path):
        with open(notes_path) as f:
            lines += ["", f.read().strip()]
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as f:
        text = f.read()
    if README_START in text and README_END in text:
        table = "\n".join(line for line in lines if line.startswith("|"))
        head, rest = text.split(README_START, 1)
        tail = rest.split(README_END, 1)[1]
        with open(readme, "w") as f:
            f.write(f"{head}{README_START}\n{table}\n{README_END}{tail}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", nargs="?", help=f"one of {', '.join(zoo.NAMES)}")
    p.add_argument("--data", help="dataset name or folder (e.g. ../shared/data/mnist)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", help="augmentation spec instead of the recipe's (e.g. 'affine:10:0.1:0.1', 'none')")
    p.add_argument("--run-dir", help="also keep a run directory (checkpoints, log.csv)")
    p.add_argument("--table", action="store_true", help="only regenerate BENCHMARKS.md")
    args = p.parse_args(argv)
    if not args.table:
        if not args.recipe or not args.data:
            p.error("a recipe and --data are required (or --table)")
        row = run(args.recipe, args.data, args.epochs, args.seed, args.batch_size, args.run_dir, args.augment)
        print(json.dumps(row))
    write_table()


if __name__ == "__main__":
    main()

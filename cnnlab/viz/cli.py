"""``cnnlab visualize`` and ``cnnlab report``: added to the main CLI by ``add_subcommands``."""
import argparse
import os
import sys

KINDS = ("filters", "feature-maps", "kernels", "activations", "curves", "confusion", "misclassified", "saliency",
         "gradcam", "top-patches")


def add_subcommands(subparsers):
    """Add ``visualize`` and ``report`` to an argparse subparsers object; each sets ``func``."""
    p = subparsers.add_parser("visualize", help="draw pictures of a run as PNG files",
                              description="Draw pictures of a training run (PNG files).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by training")
    p.add_argument("--what", required=True, choices=KINDS + ("all",), metavar="KIND",
                   help="one of: " + ", ".join(KINDS) + ", all")
    p.add_argument("--image", help="an image file, or the index of a test image (default: test image 0; "
                                   "saliency/gradcam: the first --count test images)")
    p.add_argument("--layer", help="a layer name (filters, feature-maps, gradcam, top-patches)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/viz)")
    p.add_argument("--class", dest="class_index", type=int, help="class for saliency/gradcam (default: predicted)")
    p.add_argument("--count", type=int, default=4, help="images for saliency/gradcam (default 4)")
    p.set_defaults(func=run_visualize)

    r = subparsers.add_parser("report", help="write a self-contained HTML report of a run",
                              description="Write one self-contained HTML page about a training run.")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--out", metavar="FILE", help="output file (default: RUN_DIR/report.html)")
    r.set_defaults(func=run_report)
    return subparsers


class _UsageError(Exception):
    pass


def _pick_images(args, model, config, ds):
    """(model inputs, display images) for --image, or defaults from the test set."""
    from .run import load_image
    prep = config["preprocess"]
    if args.image is not None and os.path.isfile(args.image):
        raw = load_image(args.image, model)[None]
        return prep(raw), raw
    if args.image is not None and not args.image.lstrip("-").isdigit():
        raise _UsageError(f"--image {args.image!r}: no such file (give a path or a test image index)")
    if ds is None:
        raise _UsageError("no test data for this run (run.json names none that loads offline): give --image FILE")
    if args.image is not None:
        i = int(args.image)
        if not -len(ds.x_test) <= i < len(ds.x_test):
            raise _UsageError(f"--image {i}: the test set has {len(ds.x_test)} images")
        raw = ds.x_test[i:i + 1] if i != -1 else ds.x_test[-1:]
    else:
        raw = ds.x_test[:max(1, args.count) if args.what in ("saliency", "gradcam") else 1]
    return prep(raw), raw


def _draw(kind, args, model, config, ds):
    from . import (plot_activations, plot_confusion, plot_curves, plot_feature_maps, plot_filters, plot_gradcam,
                   plot_kernels, plot_misclassified, plot_saliency, plot_top_patches, predict_proba)
    names, prep = config["class_names"], config["preprocess"]

    def need_data():
        if ds is None:
            raise _UsageError(f"{kind} needs the run's test data, which could not be loaded")
        return prep(ds.x_test), ds.y_test

    if kind == "filters":
        return plot_filters(model, args.layer)
    if kind == "activations":
        return plot_activations()
    if kind == "curves":
        if not os.path.isfile(os.path.join(args.run_dir, "log.csv")):
            raise _UsageError(f"{args.run_dir}: no log.csv")
        return plot_curves(args.run_dir)
    if kind == "confusion":
        x, y = need_data()
        return plot_confusion(y, predict_proba(model, x), names)
    if kind == "misclassified":
        x, y = need_data()
        return plot_misclassified(model, x, y, names, display=ds.x_test)
    if kind == "top-patches":
        x, _ = need_data()
        from . import conv_layers
        layer = args.layer or conv_layers(model)[-1]
        return plot_top_patches(model, x[:1000], layer, display=ds.x_test[:1000])
    x, raw = _pick_images(args, model, config, ds)
    if kind == "kernels":
        return plot_kernels(raw[0])
    if kind == "feature-maps":
        return plot_feature_maps(model, x[0], args.layer)
    if kind == "saliency":
        return plot_saliency(model, x, args.class_index, names, display=raw)
    if kind == "gradcam":
        return plot_gradcam(model, x, args.class_index, names, args.layer, display=raw)
    raise _UsageError(f"unknown kind {kind!r}")


def run_visualize(args):
    from . import save
    from .run import load_run
    if not os.path.isdir(args.run_dir):
        print(f"cnnlab visualize: {args.run_dir}: not a directory", file=sys.stderr)
        return 2
    model, config, ds = load_run(args.run_dir)
    out = args.out or os.path.join(args.run_dir, "viz")
    kinds = KINDS if args.what == "all" else (args.what,)
    status = 0
    for kind in kinds:
        try:
            fig = _draw(kind, args, model, config, ds)
        except (_UsageError, ValueError) as e:
            print(f"cnnlab visualize {kind}: {e}", file=sys.stderr)
            status = 2
            continue
        layered = kind in ("filters", "feature-maps", "gradcam", "top-patches")
        suffix = f"_{args.layer}" if args.layer and layered else ""
        print(save(fig, os.path.join(out, f"{kind}{suffix}.png")))
    return status


def run_report(args):
    from .report import build_report
    if not os.path.isdir(args.run_dir):
        print(f"cnnlab report: {args.run_dir}: not a directory", file=sys.stderr)
        return 2
    print(build_report(args.run_dir, out=args.out))
    return 0


def main(argv=None):
    """Stand-alone entry point: ``python -m cnnlab.viz.cli visualize RUN_DIR --what filters``."""
    parser = argparse.ArgumentParser(prog="cnnlab")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""One self-contained HTML page about a run: every picture embedded, nothing fetched."""
import datetime
import html
import json
import os
import warnings

import numpy as np

from ._common import conv_layers, data_uri

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; background: #f4f5f7;
       color: #1d2330; }
header { background: #243b6b; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: .85; }
main { padding: 12px 32px 40px 32px; max-width: 1200px; }
section { background: #fff; border-radius: 8px; padding: 14px 20px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h2 { font-size: 18px; margin: 4px 0 10px 0; color: #243b6b; }
h3 { font-size: 14px; margin: 12px 0 6px 0; }
pre { background: #f0f2f5; padding: 10px; overflow-x: auto; font-size: 12px; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
table.kv td { padding: 2px 12px 2px 0; vertical-align: top; font-size: 13px; }
table.kv td:first-child { font-weight: 600; color: #4a5568; }
.note { color: #6b7280; font-size: 13px; }
.metric { display: inline-block; background: #e8eefc; border-radius: 6px; padding: 8px 14px; margin-right: 10px; }
.metric b { font-size: 20px; display: block; }
"""


def _img(fig, alt):
    return f'<img alt="{html.escape(alt)}" src="{data_uri(fig)}">'


def _section(title, body, note=None):
    n = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"<section><h2>{html.escape(title)}</h2>{n}{body}</section>"


def _kv(rows):
    cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def build_report(run_dir, out=None, n_images=3, max_patch_images=500, max_layers=4):
    """Write ``out`` (default ``RUN_DIR/report.html``) and return its path."""
    from ..models.summary import summary_text
    from . import (plot_confusion, plot_curves, plot_feature_maps, plot_filters, plot_gradcam, plot_misclassified,
                   plot_saliency, plot_top_patches, predict_proba)
    from .run import load_run

    run_dir = os.fspath(run_dir)
    out = out or os.path.join(run_dir, "report.html")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, config, ds = load_run(run_dir)
    notes = [str(w.message) for w in caught]
    names = config["class_names"]
    prep = config["preprocess"]
    parts = []

    facts = [("run directory", os.path.abspath(run_dir)), ("model", model.name),
             ("data", (config.get("data") or "unknown") + (" (guessed from the input shape)"
                                                          if config.get("data_guessed") else "")),
             ("preprocessing", prep.mode), ("classes", ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")),
             ("epochs trained", config["training_state"].get("epoch", "?"))]
    metrics = ""
    x_test = y_test = probs = None
    if ds is not None:
        x_test, y_test = prep(ds.x_test), np.asarray(ds.y_test).reshape(-1)
        probs = predict_proba(model, x_test)
        acc = float((probs.argmax(1) == y_test).mean())
        metrics = (f'<div class="metric">test accuracy<b>{acc:.2%}</b></div>'
                   f'<div class="metric">test images<b>{len(y_test)}</b></div>')
    parts.append(_section("Run", metrics + _kv(facts)))
    parts.append(_section("Model", f"<pre>{html.escape(summary_text(model))}</pre>"))

    if os.path.isfile(os.path.join(run_dir, "log.csv")):
        try:
            parts.append(_section("Training curves", _img(plot_curves(run_dir), "training curves")))
        except ValueError as e:
            notes.append(f"training curves: {e}")

    if ds is not None:
        body = _img(plot_confusion(y_test, probs, names), "confusion matrix")
        body += "<h3>Most confident mistakes</h3>" + _img(
            plot_misclassified(model, x_test, y_test, names, n=16, probs=probs, display=ds.x_test), "misclassified")
        parts.append(_section("Test set", body))

    convs = conv_layers(model)
    if convs:
        body = _img(plot_filters(model), "first layer filters")
        if len(convs) > 1:
            body += f"<h3>{html.escape(convs[-1].name)}</h3>" + _img(
                plot_filters(model, convs[-1], max_filters=8, max_channels=8), "last conv filters")
        parts.append(_section("Filters", body, "What the kernels look like; first layer on its own scale per filter."))

    if ds is not None and convs:
        idx = list(range(min(n_images, len(x_test))))
        body = ""
        for i in idx:
            body += f"<h3>test image {i} (label {html.escape(names[int(y_test[i])])})</h3>"
            body += _img(plot_feature_maps(model, x_test[i], max_channels=16), f"feature maps {i}")
        parts.append(_section("Feature maps", body))
        body = _img(plot_saliency(model, x_test[idx], class_names=names, display=ds.x_test[idx]), "saliency")
        body += _img(plot_gradcam(model, x_test[idx], class_names=names, display=ds.x_test[idx]), "grad-cam")
        parts.append(_section("Where the network looks", body,
                              "Saliency: |d logit / d pixel|. Grad-CAM: the last conv layer's maps weighted by "
                              "the mean gradient of the predicted class's logit."))
        sub = slice(0, min(max_patch_images, len(x_test)))
        body = ""
        shown = convs if len(convs) <= max_layers else convs[:max_layers - 1] + [convs[-1]]
        for layer in shown:
            body += f"<h3>{html.escape(layer.name)}</h3>" + _img(
                plot_top_patches(model, x_test[sub], layer, k=6, display=ds.x_test[sub]), f"top patches {layer.name}")
        parts.append(_section("What each layer detects", body,
                              f"For 8 channels per layer, the receptive-field patches of the "
                              f"{sub.stop} test images that activate them most (activation above each patch)."))

    if notes:
        parts.append(_section("Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"))
    run_json = {k: v for k, v in config.items() if k not in ("preprocess", "training_state")}
    parts.append(_section("run.json", f"<pre>{html.escape(json.dumps(run_json, indent=2, default=str))}</pre>"))

    title = f"cnnlab report: {os.path.basename(os.path.abspath(run_dir))}"
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1><p>generated {stamp}</p></header>"
            f"<main>{''.join(parts)}</main></body></html>\n")
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, out)
    return out

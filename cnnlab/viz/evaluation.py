"""Confusion matrix and the most confident mistakes."""
import numpy as np

from ..metrics import confusion_matrix
from ._common import add_grid, as_batch, display_range, new_figure, show_image


def predict_proba(model, images, batch_size=128):
    x = as_batch(model, images)
    return np.concatenate([model.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def plot_confusion(y_true, y_pred, class_names=None, normalize=False):
    """``cm[i, j]``: true class i predicted as j. ``y_pred`` may be labels or scores."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred)
    k = len(class_names) if class_names is not None else None
    if k is None and y_pred.ndim == 2:
        k = y_pred.shape[1]
    cm = confusion_matrix(y_true, y_pred, num_classes=k)
    k = len(cm)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = min(max(4.0, 0.45 * k + 2), 16.0)
    fig = new_figure(size + 1.2, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=45 if max(len(n) for n in names) > 2 else 0, ha="right"
                      if max(len(n) for n in names) > 2 else "center", fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
    if k <= 20:
        thresh = shown.max() / 2 if shown.max() else 1
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else str(cm[i, j])
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > thresh else "black")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(cm.sum())} samples, accuracy {acc:.1%})")
    fig.tight_layout()
    return fig


def most_confident_errors(probs, labels, n=16):
    """Indices of wrong predictions, most confident first."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = np.argsort(-probs[wrong, pred[wrong]], kind="stable")
    return wrong[order][:n]


def plot_misclassified(model, images, labels, class_names=None, n=16, cols=8, probs=None, display=None):
    """A grid of the ``n`` most confident test errors, titled with true and predicted labels.

    ``display``: the images to draw (e.g. the raw uint8 ones), default ``images``.
    """
    probs = predict_proba(model, images) if probs is None else np.asarray(probs)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    idx = most_confident_errors(probs, labels, n)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(probs.shape[1])]
    display = images if display is None else display
    lo, hi = display_range(display)
    if len(idx) == 0:
        fig = new_figure(4, 2)
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, f"no misclassified images among {len(labels)}", ha="center", va="center")
        return fig
    n_cols = min(cols, len(idx))
    rows = -(-len(idx) // n_cols)
    fig = new_figure(1.6 * n_cols, 1.8 * rows + 0.5)
    pred = probs.argmax(axis=1)
    for ax, i in zip(add_grid(fig, len(idx), n_cols), idx):
        show_image(ax, display[i], lo, hi)
        ax.set_title(f"true {names[labels[i]]}\npred {names[pred[i]]} {probs[i, pred[i]]:.0%}", fontsize=7,
                     color="darkred")
    wrong = int((pred != labels).sum())
    fig.suptitle(f"most confident errors ({wrong} of {len(labels)} wrong)", fontsize=10)
    return fig

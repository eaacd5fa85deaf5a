"""Pictures of what a cnnlab network learned, each returned as a matplotlib ``Figure``.

Everything renders off-screen (Agg): no display is ever needed. The functions take explicit
arguments (a model, images, labels, class names) so they work without a run directory;
``load_run`` and the ``visualize``/``report`` commands build on them.
"""
import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: never needs a display

from ._common import conv_layers, data_uri, layer_outputs, png_bytes, save  # noqa: E402
from .activations import plot_activations  # noqa: E402
from .attribution import class_score_gradient, gradcam, plot_gradcam, plot_saliency, saliency_map  # noqa: E402
from .evaluation import plot_confusion, plot_misclassified, predict_proba  # noqa: E402
from .features import plot_feature_maps  # noqa: E402
from .kernels import CLASSIC_KERNELS, apply_kernel, plot_kernels  # noqa: E402
from .receptive import plot_top_patches, receptive_field, receptive_fields, top_patches  # noqa: E402
from .run import Preprocess, load_image, load_run  # noqa: E402
from .training import plot_curves, read_log  # noqa: E402
from .weights import plot_filters  # noqa: E402

__all__ = ["save", "png_bytes", "data_uri", "layer_outputs", "conv_layers", "plot_filters",
           "plot_feature_maps", "CLASSIC_KERNELS", "apply_kernel", "plot_kernels", "plot_activations", "read_log",
           "plot_curves", "predict_proba", "plot_confusion", "plot_misclassified", "class_score_gradient",
           "saliency_map", "plot_saliency", "gradcam", "plot_gradcam", "receptive_field", "receptive_fields",
           "top_patches", "plot_top_patches", "load_run", "load_image", "Preprocess", "build_report"]


def build_report(run_dir, out=None, **kwargs):
    """Write the self-contained HTML report of a run; returns its path (see ``report.build_report``)."""
    from .report import build_report as _build
    return _build(run_dir, out=out, **kwargs)

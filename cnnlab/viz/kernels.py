"""Classic hand-made kernels applied with the engine's own convolution."""
import numpy as np

from ..ops import conv2d as conv_ops
from ._common import add_grid, new_figure

CLASSIC_KERNELS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge detection 1": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "edge detection 2": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "edge detection 3": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "box blur": (np.ones((3, 3)) / 9).tolist(),
    "gaussian blur 3x3": (np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16).tolist(),
    "gaussian blur 5x5": (np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256).tolist(),
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}


def _as_float_image(image):
    img = np.asarray(image)
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / np.float32(scale)
    return img[..., None] if img.ndim == 2 else img


def apply_kernel(image, kernel, padding="same"):
    """Cross-correlate every channel of an (H, W[, C]) image with a 2-D kernel (conv2d op)."""
    img = _as_float_image(image)                                # (H, W, C)
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim != 2:
        raise ValueError(f"apply_kernel: the kernel must be 2-D, got shape {k.shape}")
    x = np.ascontiguousarray(np.moveaxis(img, -1, 0)[..., None])  # (C, H, W, 1): channels as a batch
    y, _ = conv_ops.forward(x, k[:, :, None, None], None, padding=padding, where="apply_kernel")
    return np.moveaxis(y[..., 0], 0, -1)                        # (H', W', C)


def plot_kernels(image, kernels=None, cols=5):
    """The image filtered by each kernel, side by side (zero-sum kernels: magnitude, rescaled)."""
    kernels = CLASSIC_KERNELS if kernels is None else kernels
    n = len(kernels)
    n_cols = min(cols, n)
    rows = -(-n // n_cols)
    fig = new_figure(2.2 * n_cols, 2.4 * rows + 0.4)
    for ax, (name, k) in zip(add_grid(fig, n, n_cols), kernels.items()):
        y = apply_kernel(image, k).astype(np.float64)
        if abs(float(np.sum(k))) < 1e-6:            # an edge detector: show the response strength
            y = np.abs(y).mean(axis=-1)
            y = y / (y.max() or 1.0)
        else:
            y = np.clip(y, 0, 1)
        if y.ndim == 3 and y.shape[-1] == 3:
            ax.imshow(y, interpolation="nearest")
        else:
            ax.imshow(y if y.ndim == 2 else y.mean(-1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    fig.suptitle("classic kernels (cnnlab conv2d, padding='same')", fontsize=10)
    return fig

"""On-the-fly augmentation of float32 NHWC batches, vectorised over the batch.

Each transform is ``t(x, rng) -> new array`` (the input is not modified; labels are not its
business) with ``get_config()``; ``parse("shift:1,flip:horizontal,crop:4,erase:0.5,affine:10:0.1")``
builds a ``Compose`` from a command-line string.
"""
import numpy as np

from ..utils import unknown_name_error


def _check_batch(x, who):
    if x.ndim != 4:
        raise ValueError(f"{who}: expected a batch of shape (N, H, W, C), got {x.shape}")


def shift(x, dy, dx, out=None):
    """``x`` moved ``dy`` pixels down and ``dx`` right (negative: up/left) with zero fill."""
    out = np.zeros_like(x) if out is None else out
    h, w = x.shape[1:3]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y, dst_y = slice(max(-dy, 0), h - max(dy, 0)), slice(max(dy, 0), h - max(-dy, 0))
    src_x, dst_x = slice(max(-dx, 0), w - max(dx, 0)), slice(max(dx, 0), w - max(-dx, 0))
    out[:, dst_y, dst_x] = x[:, src_y, src_x]
    return out


def _shift_each(x, dy, dx):
    """Image ``i`` shifted by ``(dy[i], dx[i])``: one vectorised copy per distinct offset."""
    out = np.zeros_like(x)
    offsets = np.stack([dy, dx], axis=1)
    for oy, ox in np.unique(offsets, axis=0):
        idx = np.flatnonzero((dy == oy) & (dx == ox))
        out[idx] = shift(x[idx], int(oy), int(ox))
    return out


class RandomShift:
    """Translate each image with zero fill.

    ``mode='four'``: one of {none, up, down, left, right} by ``max_pixels``, uniformly per image.
    ``mode='any'``: ``dy`` and ``dx`` uniform integers in ``[-max_pixels, max_pixels]``.
    """

    # (dy, dx) of none, up, down, left, right
    _FOUR = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])

    def __init__(self, max_pixels=1, mode="four"):
        if int(max_pixels) < 0:
            raise ValueError(f"RandomShift: max_pixels must be >= 0, got {max_pixels}")
        if mode not in ("four", "any"):
            raise ValueError(f"RandomShift: mode must be 'four' or 'any', got {mode!r}")
        self.max_pixels, self.mode = int(max_pixels), mode

    def __call__(self, x, rng):
        _check_batch(x, "RandomShift")
        n = len(x)
        if self.mode == "four":
            d = self._FOUR[rng.integers(0, 5, size=n)] * self.max_pixels
            dy, dx = d[:, 0], d[:, 1]
        else:
            dy, dx = rng.integers(-self.max_pixels, self.max_pixels + 1, size=(2, n))
        return _shift_each(x, dy, dx)

    def get_config(self):
        return {"name": "shift", "max_pixels": self.max_pixels, "mode": self.mode}


class RandomFlip:
    """Mirror each image with probability 1/2 (independently per axis for ``'horizontal_and_vertical'``)."""

    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal"):
        if mode not in self.MODES:
            raise unknown_name_error("flip mode", mode, self.MODES)
        self.mode = mode

    def __call__(self, x, rng):
        _check_batch(x, "RandomFlip")
        out = x.copy()
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            m = rng.random(len(x)) < 0.5
            out[m] = out[m, :, ::-1]
        if self.mode in ("vertical", "horizontal_and_vertical"):
            m = rng.random(len(x)) < 0.5
            out[m] = out[m, ::-1]
        return out

    def get_config(self):
        return {"name": "flip", "mode": self.mode}


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then crop a random window of the original size."""

    def __init__(self, padding=4):
        if int(padding) < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x, rng):
        _check_batch(x, "RandomCrop")
        n, h, w, _ = x.shape
        p = self.padding
        padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        oy, ox = rng.integers(0, 2 * p + 1, size=(2, n))
        rows = oy[:, None] + np.arange(h)            # (n, h): the window's rows per image
        cols = ox[:, None] + np.arange(w)            # (n, w)
        return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]

    def get_config(self):
        return {"name": "crop", "padding": self.padding}


class RandomErasing:
    """With probability ``p``, set a random rectangle to ``value`` (Zhong et al., 2017).

    Its area is a ``scale`` fraction of the image and its aspect ratio (h/w) is log-uniform in
    ``ratio``; sizes are clipped to the image.
    """

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomErasing: p must be in [0, 1], got {p}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"RandomErasing: scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomErasing: ratio must satisfy 0 < min <= max, got {ratio}")
        self.p, self.scale, self.ratio, self.value = float(p), tuple(scale), tuple(ratio), float(value)

    def __call__(self, x, rng):
        _check_batch(x, "RandomErasing")
        n, h, w, _ = x.shape
        apply = rng.random(n) < self.p
        area = h * w * rng.uniform(*self.scale, size=n)
        aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), size=n))
        eh = np.clip(np.round(np.sqrt(area * aspect)), 1, h).astype(int)
        ew = np.clip(np.round(np.sqrt(area / aspect)), 1, w).astype(int)
        y0 = (rng.random(n) * (h - eh + 1)).astype(int)
        x0 = (rng.random(n) * (w - ew + 1)).astype(int)
        r, c = np.arange(h), np.arange(w)
        in_rows = (r >= y0[:, None]) & (r < (y0 + eh)[:, None])       # (n, h)
        in_cols = (c >= x0[:, None]) & (c < (x0 + ew)[:, None])       # (n, w)
        mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
        out = x.copy()
        out[mask] = self.value
        return out

    def get_config(self):
        return {"name": "erase", "p": self.p, "scale": list(self.scale), "ratio": list(self.ratio), "value": self.value}


def warp_affine(x, M, offset, fill=0.0):
    """Bilinear resampling of each image under its own affine map, ``fill`` outside.

    ``out[n, p] = x[n] sampled at M[n] @ (p - c) + c + offset[n]``, with ``p`` and
    ``c`` (the image centre) as (row, col) and ``M`` (N, 2, 2) mapping output to
    input coordinates. Vectorised over images and pixels: four gathers in all.
    """
    n, h, w, C = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows, cols = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    grid = np.stack([rows.ravel(), cols.ravel()])                      # (2, h*w)
    src = np.asarray(M, np.float64) @ grid                             # (n, 2, h*w)
    # a two-pixel border of fill; coordinates off the image clip to -1.5 or size + 0.5,
    # whose four neighbours all lie in that border, so they read fill only
    sy = np.clip(src[:, 0] + (cy + offset[:, 0:1]), -1.5, h + 0.5)    # (n, h*w)
    sx = np.clip(src[:, 1] + (cx + offset[:, 1:2]), -1.5, w + 0.5)
    y0, x0 = np.floor(sy), np.floor(sx)
    wy, wx = (sy - y0).astype(x.dtype)[:, :, None], (sx - x0).astype(x.dtype)[:, :, None]
    W2 = w + 4
    padded = np.full((n, h + 4, W2, C), fill, x.dtype)                 # (n, h+4, w+4, C)
    padded[:, 2:-2, 2:-2] = x
    flat = padded.reshape(-1, C)                                       # (n*(h+4)*(w+4), C)
    i00 = ((y0.astype(np.intp) + 2) * W2 + x0.astype(np.intp) + 2
           + (np.arange(n) * (h + 4) * W2)[:, None])                   # (n, h*w): top-left neighbour
    top = flat.take(i00, axis=0) * (1 - wx) + flat.take(i00 + 1, axis=0) * wx      # (n, h*w, C)
    bottom = flat.take(i00 + W2, axis=0) * (1 - wx) + flat.take(i00 + W2 + 1, axis=0) * wx
    return (top * (1 - wy) + bottom * wy).reshape(x.shape)


class RandomAffine:
    """Rotate, zoom, shear and translate each image by its own random amounts (bilinear, ``fill`` outside).

    ``rotation`` and ``shear``: at most that many degrees either way; ``zoom``: scale factor
    uniform in ``[1 - zoom, 1 + zoom]``; ``translate``: at most that fraction of the height and
    width either way. All about the image centre, drawn uniformly and independently per image
    (what Keras's RandomRotation, RandomZoom and RandomTranslation do one at a time).
    """

    def __init__(self, rotation=0.0, zoom=0.0, translate=0.0, shear=0.0, fill=0.0):
        for name, value, top in (("rotation", rotation, 180), ("zoom", zoom, 1), ("translate", translate, 1),
                                 ("shear", shear, 90)):
            if not 0 <= float(value) < top:  # zoom 1 could draw scale 0, shear 90 an infinite slope
                raise ValueError(f"RandomAffine: {name} must be in [0, {top}), got {value}")
        self.rotation, self.zoom, self.translate = float(rotation), float(zoom), float(translate)
        self.shear, self.fill = float(shear), float(fill)

    def __call__(self, x, rng):
        _check_batch(x, "RandomAffine")
        n, h, w, _ = x.shape
        theta = np.deg2rad(rng.uniform(-self.rotation, self.rotation, size=n))
        scale = rng.uniform(1 - self.zoom, 1 + self.zoom, size=n)
        shear = np.tan(np.deg2rad(rng.uniform(-self.shear, self.shear, size=n)))
        shift = rng.uniform(-self.translate, self.translate, size=(n, 2)) * (h, w)
        cos, sin = np.cos(theta), np.sin(theta)
        # forward map A = rotation @ shear @ scale; sampling needs its inverse
        inv = np.empty((n, 2, 2))
        inv[:, 0, 0], inv[:, 0, 1] = cos, sin
        inv[:, 1, 0], inv[:, 1, 1] = -sin - shear * cos, cos - shear * sin
        inv /= scale[:, None, None]
        return warp_affine(x, inv, -np.einsum("nij,nj->ni", inv, shift), self.fill)

    def get_config(self):
        return {"name": "affine", "rotation": self.rotation, "zoom": self.zoom, "translate": self.translate,
                "shear": self.shear, "fill": self.fill}


class Compose:
    """Apply ``transforms`` in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __len__(self):
        return len(self.transforms)

    def get_config(self):
        return {"name": "compose", "transforms": [t.get_config() for t in self.transforms]}


_CLASSES = {"shift": RandomShift, "flip": RandomFlip, "crop": RandomCrop, "erase": RandomErasing,
            "affine": RandomAffine, "compose": Compose}


def from_config(config):
    """Rebuild a transform from its ``get_config()``."""
    cfg = dict(config)
    name = cfg.pop("name")
    if name not in _CLASSES:
        raise unknown_name_error("augmentation", name, _CLASSES)
    if name == "compose":
        return Compose([from_config(c) for c in cfg["transforms"]])
    return _CLASSES[name](**cfg)


_PARSED = tuple(name for name in _CLASSES if name != "compose")  # what a spec string can name


def parse(spec):
    """``"shift:1,flip:horizontal,crop:4,erase:0.5"`` -> ``Compose``; ``""``/``"none"`` -> empty.

    Items are ``name[:arg[:arg]]``: ``shift:N[:four|any]``, ``flip:MODE``, ``crop:PADDING``, ``erase:P``,
    ``affine:DEGREES[:ZOOM[:TRANSLATE[:SHEAR]]]`` (see ``RandomAffine``).
    """
    transforms = []
    for item in (s.strip() for s in (spec or "").split(",")):
        if not item or item.lower() == "none":
            continue
        name, *args = [a.strip() for a in item.split(":")]
        name = name.lower()
        if name not in _PARSED:
            raise unknown_name_error("augmentation", name, _PARSED)
        try:
            if name == "shift":
                t = RandomShift(int(args[0]) if args else 1, *(args[1:2]))
            elif name == "flip":
                t = RandomFlip(args[0] if args else "horizontal")
            elif name == "crop":
                t = RandomCrop(int(args[0]) if args else 4)
            elif name == "affine":
                t = RandomAffine(*(float(a) for a in args[:4]))
            else:
                t = RandomErasing(float(args[0]) if args else 0.5)
        except (TypeError, ValueError) as e:
            raise ValueError(f"augmentation {item!r}: bad arguments ({e})") from None
        transforms.append(t)
    return Compose(transforms)

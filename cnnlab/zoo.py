"""Model zoo: the seed documents' networks exactly as they build them, plus a few of our own.

``get(name)`` returns a ``Recipe``: the architecture (``build``), the seed's own optimizer,
batch size, epochs and augmentation, the accuracy it reported (``claim``) and ``notes`` on its
bugs and lessons. Where a seed has a bug in its network, ``<name>_fixed`` sits beside the
faithful recipe. ``recipe.compiled()`` builds and compiles in one call.

Seeds written against TensorFlow 1 use TF1's optimizer epsilons (Adam 1e-8, RMSprop 1e-10);
``Dense(10, activation="softmax")`` stands for the seeds' "logits + softmax cross-entropy"
(the loss fuses the two, so training sees exactly the seed's logits).
"""
import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import layers as L
from .models.model import Model, Sequential
from .utils import unknown_name_error

LOSS = "sparse_categorical_crossentropy"
TRAIN_SIZES = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000, "cifar100": 50000, "digits": 1437,
               "fruits360": 28736}


@dataclass
class Recipe:
    name: str
    description: str
    builder: Callable = field(repr=False)  # builder(input_shape, num_classes) -> Model
    optimizer: dict = None  # {"class_name", "config"} for cnnlab.optimizers.get (default steps per epoch)
    loss: object = LOSS  # a name, or a config dict such as {"name": ..., "label_smoothing": 0.1}
    metrics: list = field(default_factory=lambda: ["accuracy"])
    batch_size: int = 32
    epochs: int = 10
    augment: Optional[str] = None
    dataset: str = "mnist"
    input_shape: tuple = (28, 28, 1)
    num_classes: int = 10
    claim: Optional[str] = None
    notes: str = ""
    # test accuracy from the mean output over views of each image (cnnlab.training.predict_tta):
    # with its mirror image, and moved test_time_shift pixels in four directions
    test_time_flip: bool = False
    test_time_shift: int = 0
    # optimizer_fn(steps_per_epoch, epochs) -> optimizer config, for schedules tied to the step count
    optimizer_fn: Optional[Callable] = field(default=None, repr=False)

    def __post_init__(self):
        self.input_shape = tuple(self.input_shape)
        if self.optimizer is None:
            self.optimizer = self.optimizer_config()

    def default_steps_per_epoch(self):
        n = TRAIN_SIZES.get(self.dataset)
        return math.ceil(n / self.batch_size) if n else None

    def optimizer_config(self, steps_per_epoch=None, epochs=None):
        """The optimizer config; schedules are sized for ``steps_per_epoch`` x ``epochs``
        (defaults: the recipe's data set and batch size, and its epochs)."""
        if self.optimizer_fn is None:
            return copy.deepcopy(self.optimizer)
        steps = steps_per_epoch or self.default_steps_per_epoch() or 1
        return self.optimizer_fn(int(steps), int(epochs or self.epochs))

    def build(self, input_shape=None, num_classes=None):
        """An uncompiled model for ``input_shape`` (H, W, C) and ``num_classes`` (recipe defaults)."""
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        if len(shape) == 4:  # tolerate a batch shape (None, H, W, C)
            shape = shape[1:]
        if len(shape) != 3:
            raise ValueError(f"recipe {self.name!r}: input_shape must be (height, width, channels), "
                             f"received {input_shape!r}")
        classes = int(num_classes) if num_classes is not None else self.num_classes
        if classes < 2:
            raise ValueError(f"recipe {self.name!r}: num_classes must be >= 2, received {num_classes!r}")
        return self.builder(shape, classes)

    def compiled(self, input_shape=None, num_classes=None, steps_per_epoch=None, epochs=None):
        """``build()`` then ``compile()`` with the recipe's optimizer, loss and metrics."""
        model = self.build(input_shape, num_classes)
        model.compile(optimizer=self.optimizer_config(steps_per_epoch, epochs), loss=self.loss,
                      metrics=list(self.metrics))
        return model

    def fit_kwargs(self):
        """``batch_size``, ``epochs`` and ``augment`` for ``model.fit``."""
        return {"batch_size": self.batch_size, "epochs": self.epochs, "augment": self.augment}

    def to_dict(self):
        return {"name": self.name, "description": self.description, "optimizer": self.optimizer, "loss": self.loss,
                "metrics": list(self.metrics), "batch_size": self.batch_size, "epochs": self.epochs,
                "augment": self.augment, "dataset": self.dataset, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "claim": self.claim, "notes": self.notes,
                "test_time_flip": self.test_time_flip, "test_time_shift": self.test_time_shift}


def _opt(class_name, **config):
    return {"class_name": class_name, "config": config}


def _normal(stddev):
    return {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": stddev}}


def _trunc(stddev):
    return {"class_name": "TruncatedNormal", "config": {"mean": 0.0, "stddev": stddev}}


def _const(value):
    return {"class_name": "Constant", "config": {"value": value}}


def _sequential(input_shape, layer_list, name):
    model = Sequential(name=name)
    model.add(L.Input(input_shape))
    for layer in layer_list:
        model.add(layer)
    return model


# ----- seed 000: three conv layers, no biases, RMSprop ----------------------------------
def _seed000(shape, classes):
    def conv(f):
        return L.Conv2D(f, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=_normal(0.01))
    return _sequential(shape, [
        conv(32), L.MaxPooling2D(2, padding="same"), L.Dropout(0.2),
        conv(64), L.MaxPooling2D(2, padding="same"), L.Dropout(0.2),
        conv(128), L.MaxPooling2D(2, padding="same"),
        L.Flatten(), L.Dropout(0.2),  # the seed reshapes first, then drops (same thing)
        L.Dense(625, activation="relu", use_bias=False, kernel_initializer=_normal(0.01)), L.Dropout(0.5),
        L.Dense(classes, activation="softmax", use_bias=False, kernel_initializer=_normal(0.01)),
    ], "seed000")


SEED000_NOTES = """\
Faithful to the seed: no biases anywhere (tf.matmul/conv2d only), every weight N(0, 0.01^2), 'same' 2x2
max pooling (7 -> 4 at the third pool, hence 4*4*128 = 2048 inputs to the 625-unit layer), keep-probabilities
0.8 after each pool (the third one after the flatten) and 0.5 after the hidden layer -> Dropout(0.2)/(0.5).
Optimizer: tf.train.RMSPropOptimizer(0.001, 0.9); TF1's epsilon is 1e-10 (used here).
Differences we cannot reproduce: TF1's RMSprop starts its mean-square accumulator at 1.0 (Keras and
cnnlab start at 0), which makes TF1's first steps much smaller.
Seed bugs (training/evaluation code, not the network, so there is no _fixed variant):
- Evaluation feeds keep-probability 0.0 (meant: no dropout, which is keep-probability 1.0); tf.nn.dropout
  rejects 0 (or divides by zero), so the seed's validation numbers cannot have come from this code.
  cnnlab's Dropout is simply off at inference.
- softmax_cross_entropy_with_logits(self.logits, self.y) passes positional arguments, which TF >= 1.0 rejects
  (they must be named labels=/logits=).
- generate_batches drops the last partial batch in training and in evaluation (16 of the 10,000 test images).
No accuracy is reported in the document."""


# ----- seed 001: 12/16-filter convs without activation, ReLU output layer -----------------
def _seed001_body(shape, classes, bn, relu_output, dead_dropout, name):
    layer_list = [L.Conv2D(12, 3, padding="same"), L.MaxPooling2D(3, strides=2)]
    if bn:
        layer_list.append(L.BatchNormalization(momentum=0.9))
        if not dead_dropout:
            layer_list.append(L.Dropout(0.5))
    layer_list += [L.Conv2D(16, 3, padding="same"), L.MaxPooling2D(3, strides=2)]
    if bn:
        layer_list += [L.BatchNormalization(momentum=0.9), L.Dropout(0.5)]
    layer_list += [L.Flatten(), L.Dense(256, activation="relu"), L.Dense(100, activation="relu")]
    if relu_output:
        # The seed's logits = relu(Wx + b); its loss applies softmax to them. Keep both.
        layer_list += [L.Dense(classes, activation="relu"), L.Softmax()]
    else:
        layer_list.append(L.Dense(classes, activation="softmax"))
    return _sequential(shape, layer_list, name)


SEED001_COMMON = """\
Network as the code builds it (tf.layers defaults = Keras defaults: glorot-uniform kernels, zero biases):
conv 12@3x3 'same' -> max pool 3x3 stride 2 'valid' (28 -> 13) -> conv 16@3x3 'same' -> pool (13 -> 6) ->
flatten 576 -> dense 256 relu -> dense 100 relu -> dense 10. The convolutions have NO activation
(tf.layers.conv2d defaults to linear; max pooling is the only non-linearity there); kept in every
variant, _fixed included. The prose says the dense layers use SELU; the code uses ReLU (we follow the code).
Seed bug: the output layer has activation=tf.nn.relu, so the "logits" are clipped at 0. A ReLU output
cannot feed Keras-style sparse_categorical_crossentropy directly, so the faithful recipe ends with
Dense(10, relu) followed by a Softmax layer: the loss then applies softmax cross-entropy to the ReLU'd
logits, exactly what tf.nn.sparse_softmax_cross_entropy_with_logits did in the seed. Consequences:
classes whose score is negative all tie at 0, an output unit that goes dead stops learning, and the
seed's tf.nn.in_top_k counts ties as hits (an all-zero output row scores as correct), which can
inflate the reported accuracy. The _fixed variant uses a plain softmax output layer.
Evaluation: the seed's test set is a random 10,000 of the 70,000 MNIST images (fetch_mldata), not the
standard test split; its "validation accuracy" is measured on that same test set every epoch and the
best/last epoch is reported, so the claim is optimistic and not directly comparable."""

SEED001_BN_NOTES = """\
Batch-norm variant: batch normalization (momentum 0.9) after each pool, dropout 0.5, 30 epochs
(the listing says range(20) but its printed log and the prose have 30), trained on x_train plus the four
one-pixel shifts plus horizontal flips (a fixed 6x-sized set; `final_x` is never defined in the listing).
cnnlab does this on the fly: "shift:1,flip:horizontal" = per image one of {none, up, down, left, right}
by one pixel, then a mirror with probability 1/2. Mirroring digits is not label-preserving (a mirrored
2, 3, 4, 7 is no digit) - a questionable choice kept as the seed made it.
Seed bugs: (1) ReLU on the output layer, as in seed001; (2) dropout1 is computed but never used: conv2
reads bn1, not dropout1, so only the second dropout is active (the faithful recipe omits the dead one);
(3) the listing has a syntax error ("X reshaped"). seed001_bn_fixed: softmax output and one-pixel shifts
without the mirroring (measured: the faithful recipe with shifts only reaches 99.40% after 30 epochs,
against 98.85% with the flips). It keeps the dropout the seed actually ran, after the second block only:
reviving the dead first one was measured to cost accuracy (99.26%)."""


def _seed001(shape, classes):
    return _seed001_body(shape, classes, bn=False, relu_output=True, dead_dropout=True, name="seed001")


def _seed001_fixed(shape, classes):
    return _seed001_body(shape, classes, bn=False, relu_output=False, dead_dropout=True, name="seed001_fixed")


def _seed001_bn(shape, classes):
    return _seed001_body(shape, classes, bn=True, relu_output=True, dead_dropout=True, name="seed001_bn")


def _seed001_bn_fixed(shape, classes):
    return _seed001_body(shape, classes, bn=True, relu_output=False, dead_dropout=True, name="seed001_bn_fixed")


# ----- seeds 002 and 003: the TensorFlow "Deep MNIST" layout --------------------------------
def _deep_mnist(shape, classes, kernel_init, bias_init, dropout, name):
    def conv(f):
        return L.Conv2D(f, 5, padding="same", activation="relu", kernel_initializer=kernel_init,
                        bias_initializer=bias_init)
    return _sequential(shape, [
        conv(32), L.MaxPooling2D(2, padding="same"),
        conv(64), L.MaxPooling2D(2, padding="same"),
        L.Flatten(),
        L.Dense(1024, activation="relu", kernel_initializer=kernel_init, bias_initializer=bias_init),
        L.Dropout(dropout),
        L.Dense(classes, activation="softmax", kernel_initializer=kernel_init, bias_initializer=bias_init),
    ], name)


def _seed002(shape, classes):
    return _deep_mnist(shape, classes, _trunc(0.1), _const(0.1), 0.5, "seed002")


def _seed003(shape, classes):
    return _deep_mnist(shape, classes, _normal(1.0), _normal(1.0), 0.25, "seed003")


def _seed003_fixed(shape, classes):
    return _deep_mnist(shape, classes, "he_normal", "zeros", 0.25, "seed003_fixed")


SEED002_NOTES = """\
conv 32@5x5 'same' relu -> max pool 2 'same' -> conv 64@5x5 'same' relu -> max pool 2 'same' -> flatten
3136 -> dense 1024 relu -> dropout (keep 0.5) -> dense 10. Every weight truncated normal stddev 0.1 (values
beyond 2 stddev redrawn), every bias the constant 0.1. Adam 1e-4 (TF1 epsilon 1e-8), batch 50.
The seed trains 5,000 iterations of 50 images from mnist.train (55,000 images): about 4.5 epochs; the
recipe uses 5. No bug found in the network or training code; the document shows no final accuracy."""

SEED003_NOTES = """\
Same layout as seed002, as the document trains it: weights AND biases tf.random_normal with stddev 1,
dropout keep 0.75 (rate 0.25), plain gradient descent at 1e-5, batch 128, 10 epochs (429 batches of
mnist.train per epoch, remainder dropped). Expected to learn badly - a lesson in why initialization
matters: with unit-variance weights the pre-activations grow by sqrt(fan_in) per layer (25, 800, 3136
inputs), so the logits are in the thousands, the initial loss is huge, softmax is saturated and most ReLUs
are either dead or enormous; the tiny learning rate (chosen to keep that from diverging) then makes
progress glacial. The document's accuracy is measured on only the first 256 validation/test images, so
even its numbers are noisy (+-2%). seed003_fixed: He-normal kernels, zero biases, SGD 0.01 momentum 0.9."""


# ----- seed 004: the Fruits-360 Keras network ---------------------------------------------
def _seed004(shape, classes):
    x0 = L.Input(shape)
    x = x0
    for filters, n in ((32, 3), (64, 3), (128, 3), (256, 2)):
        for _ in range(n):
            x = L.Conv2D(filters, kernel_size=(3, 3), strides=(1, 1), padding="same", activation="relu")(x)
        x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(1024, activation="relu")(x)
    preds = L.Dense(classes, activation="softmax")(x)
    return Model(inputs=x0, outputs=preds, name="seed004")


SEED004_NOTES = """\
The Keras functional model of the Fruits-360 post: 3x conv 32, pool, 3x conv 64, pool, 3x conv 128, pool,
2x conv 256, pool (100 -> 50 -> 25 -> 12 -> 6), flatten 9216, dense 1024 relu, dense 60 softmax:
10,865,724 parameters, matching the document's summary. Keras defaults throughout (glorot-uniform, zero
biases). compile(optimizer='adam') = Adam(0.001); the seed uses categorical_crossentropy on one-hot labels,
equivalent to our sparse loss on integer labels. Batch size and epochs are not given: batch 32 is Keras's
fit() default; the 10 epochs are our choice. The data set (Fruits-360, 60 classes at the time, 100x100
RGB) is not bundled: point the loader at its Training/Test folders. No bug found; no accuracy reported.
About 1.6 GFLOPs per image forward - far too slow to train on 2 CPU cores at full size."""


# ----- beyond the seeds ---------------------------------------------------------------------
def _lenet5(shape, classes):
    h = min(shape[0], shape[1])
    pad = (32 - h + 1) // 2 if h < 32 else "valid"  # LeNet-5 saw 32x32: pad 28x28 MNIST by 2
    return _sequential(shape, [
        L.Conv2D(6, 5, padding=pad, activation="tanh"), L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="tanh"), L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="tanh"), L.Dense(84, activation="tanh"),
        L.Dense(classes, activation="softmax"),
    ], "lenet5")


def _conv_bn_relu(f, kernel=3, strides=1):
    return [L.Conv2D(f, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal"),
            L.BatchNormalization(), L.ReLU()]


def _vgg(shape, classes, widths, dense, dropout, name):
    layer_list = []
    for f in widths:
        layer_list += _conv_bn_relu(f) + _conv_bn_relu(f) + [L.MaxPooling2D(2), L.Dropout(dropout)]
    layer_list.append(L.Flatten())
    if dense:
        layer_list += [L.Dense(dense, use_bias=False, kernel_initializer="he_normal"), L.BatchNormalization(),
                       L.ReLU(), L.Dropout(0.5)]
    layer_list.append(L.Dense(classes, activation="softmax"))
    return _sequential(shape, layer_list, name)


def _vgg_small(shape, classes):
    return _vgg(shape, classes, (32, 64, 128), 256, 0.25, "vgg_small")


def _resnet_small(shape, classes, widths=(16, 32, 64), blocks=1):
    def conv_bn(x, f, k=3, s=1, relu=True):
        x = L.Conv2D(f, k, strides=s, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x) if relu else x

    inp = L.Input(shape)
    x = conv_bn(inp, widths[0])
    for stage, f in enumerate(widths):
        for b in range(blocks):
            s = 2 if stage > 0 and b == 0 else 1
            y = conv_bn(x, f, s=s)
            y = conv_bn(y, f, relu=False)
            shortcut = x
            if s != 1 or x.shape[-1] != f:  # projection shortcut: 1x1 conv (stride 2) + BN
                shortcut = conv_bn(x, f, k=1, s=s, relu=False)
            x = L.ReLU()(L.Add()([y, shortcut]))
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(classes, activation="softmax")(x)
    return Model(inputs=inp, outputs=out, name="resnet_small")


def _conv_pool_bn_relu(f):
    # pooling first: batch norm and ReLU then run on a quarter of the pixels (measured: 28% off
    # the step of the conv-BN-ReLU-pool order at these sizes). ReLU alone commutes with max
    # pooling; batch norm does not, so this is a different network, not a rewrite of that one.
    return [L.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer="he_normal"),
            L.MaxPooling2D(2), L.BatchNormalization(), L.ReLU()]


def _mnist_best(shape, classes):
    # 28 -> 14 -> 7 -> 3: three 3x3 convolutions (32, 64, 128), about 15 MFLOPs per image forward.
    layer_list = (_conv_pool_bn_relu(32) + _conv_pool_bn_relu(64) + _conv_pool_bn_relu(128)
                  + [L.Flatten(), L.Dropout(0.3), L.Dense(classes, activation="softmax")])
    return _sequential(shape, layer_list, "mnist_best")


def _fashion_best(shape, classes):
    # 28 -> 14 -> 7 -> 3: one conv at 28x28, two at 14x14 (64) and two at 7x7 (128), each block
    # max-pooled before its batch norm: about 44 MFLOPs per image forward.
    layer_list = (_conv_pool_bn_relu(32) + _conv_bn_relu(64) + _conv_pool_bn_relu(64)
                  + _conv_bn_relu(128) + _conv_pool_bn_relu(128)
                  + [L.Flatten(), L.Dropout(0.3), L.Dense(classes, activation="softmax")])
    return _sequential(shape, layer_list, "fashion_best")


def _digits_small(shape, classes):
    return _sequential(shape, [
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dropout(0.25),
        L.Dense(64, activation="relu"),
        L.Dense(classes, activation="softmax"),
    ], "digits_small")


def _onecycle_adam(max_lr, weight_decay=None):
    def make(steps_per_epoch, epochs):
        config = {"learning_rate": {"class_name": "OneCycle", "config": {
            "max_learning_rate": max_lr, "total_steps": max(1, steps_per_epoch * epochs), "pct_start": 0.25,
            "div_factor": 25.0, "final_div_factor": 1e3}}}
        if weight_decay:
            return _opt("AdamW", weight_decay=weight_decay, **config)
        return _opt("Adam", **config)
    return make


def _cosine_adam(lr):
    def make(steps_per_epoch, epochs):
        return _opt("Adam", learning_rate={"class_name": "CosineDecay", "config": {
            "initial_learning_rate": lr, "decay_steps": max(1, steps_per_epoch * epochs), "alpha": 0.01}})
    return make


_RECIPES = [
    Recipe("seed000", "Seed 000: 3 bias-free 3x3 convs (32/64/128) + pools + dropout, dense 625, RMSprop",
           _seed000, optimizer=_opt("RMSprop", learning_rate=0.001, rho=0.9, epsilon=1e-10),
           batch_size=128, epochs=10, notes=SEED000_NOTES),
    Recipe("seed001", "Seed 001 (faithful): convs 12/16 without activation, 3x3/2 pools, dense 256-100-10 "
           "with the seed's ReLU output (+ softmax in the loss)",
           _seed001, optimizer=_opt("Adam", learning_rate=0.001, epsilon=1e-8), batch_size=128, epochs=20,
           claim="99.07% on MNIST (random 10k hold-out of 70k, epoch 20)", notes=SEED001_COMMON),
    Recipe("seed001_fixed", "Seed 001 corrected: softmax output layer instead of ReLU",
           _seed001_fixed, optimizer=_opt("Adam", learning_rate=0.001, epsilon=1e-8), batch_size=128, epochs=20,
           notes=SEED001_COMMON),
    Recipe("seed001_bn", "Seed 001 with batch norm (momentum 0.9) after each pool, dropout 0.5, shift/flip "
           "augmentation (faithful: ReLU output, first dropout dead)",
           _seed001_bn, optimizer=_opt("Adam", learning_rate=0.001, epsilon=1e-8), batch_size=128, epochs=30,
           augment="shift:1,flip:horizontal",
           claim="99.5% on MNIST (random 10k hold-out of 70k, epoch 30)",
           notes=SEED001_BN_NOTES + "\n" + SEED001_COMMON),
    Recipe("seed001_bn_fixed", "Seed 001 batch-norm variant corrected: softmax output, shifts without the "
           "mirroring",
           _seed001_bn_fixed, optimizer=_opt("Adam", learning_rate=0.001, epsilon=1e-8), batch_size=128,
           epochs=30, augment="shift:1", notes=SEED001_BN_NOTES + "\n" + SEED001_COMMON),
    Recipe("seed002", "Seed 002: conv 5x5x32, pool, conv 5x5x64, pool, dense 1024, dropout 0.5; truncated "
           "normal 0.1 / bias 0.1; Adam 1e-4",
           _seed002, optimizer=_opt("Adam", learning_rate=1e-4, epsilon=1e-8), batch_size=50, epochs=5,
           notes=SEED002_NOTES),
    Recipe("seed003", "Seed 003: seed 002's layout with N(0, 1) weights and biases and SGD 1e-5 (learns badly)",
           _seed003, optimizer=_opt("SGD", learning_rate=1e-5), batch_size=128, epochs=10, notes=SEED003_NOTES),
    Recipe("seed003_fixed", "Seed 003 corrected: He-normal init, zero biases, SGD 0.01 momentum 0.9",
           _seed003_fixed, optimizer=_opt("SGD", learning_rate=0.01, momentum=0.9), batch_size=128, epochs=10,
           notes=SEED003_NOTES),
    Recipe("seed004", "Seed 004: the Fruits-360 Keras CNN (11 convs, 4 pools, dense 1024), 10,865,724 params",
           _seed004, optimizer=_opt("Adam", learning_rate=0.001), batch_size=32, epochs=10, dataset="fruits360",
           input_shape=(100, 100, 3), num_classes=60, notes=SEED004_NOTES),
    Recipe("lenet5", "LeNet-5 (1998): 6@5x5 tanh, avg pool, 16@5x5 tanh, avg pool, dense 120-84-10",
           _lenet5, optimizer=_opt("Adam", learning_rate=0.001), batch_size=128, epochs=10,
           notes="28x28 inputs are zero-padded by 2 in the first convolution, as LeNet-5 saw 32x32 images. "
                 "C5 is a dense 120 (identical to a 5x5 convolution on the 5x5x16 map). Plain average pooling "
                 "and tanh instead of the paper's trainable subsampling, scaled tanh and RBF output; "
                 "Keras init and Adam instead of the paper's schedule."),
    Recipe("vgg_small", "VGG-style: 3 blocks of two 3x3 conv + BN + ReLU (32/64/128) + max pool + dropout, "
           "dense 256",
           _vgg_small, optimizer=_opt("Adam", learning_rate=0.001), batch_size=128, epochs=30,
           augment="shift:2:any,flip:horizontal", dataset="cifar10", input_shape=(32, 32, 3),
           notes="Works for 28x28 (28 -> 14 -> 7 -> 3) and 32x32 (-> 4) inputs. Drop the flip for digits."),
    Recipe("resnet_small", "Small ResNet (functional API): 3x3 stem, three stages (16/32/64) of one basic "
           "residual block, projection shortcuts, global average pooling",
           _resnet_small, optimizer=_opt("Adam", learning_rate=0.001), batch_size=128, epochs=30,
           augment="crop:4,flip:horizontal", dataset="cifar10", input_shape=(32, 32, 3),
           notes="Basic blocks conv-BN-ReLU-conv-BN + shortcut, ReLU after the Add. Stages 2 and 3 halve the "
                 "resolution with stride-2 convolutions; their shortcut is a 1x1 stride-2 convolution + BN."),
    Recipe("mnist_best", "Our MNIST recipe: three 3x3 convs (32/64/128), each max-pooled before BN and ReLU, "
           "dropout, random rotation/zoom/translation, Adam with OneCycle, test accuracy averaged over each "
           "image and copies moved 1 pixel in four directions",
           _mnist_best, batch_size=128, epochs=22, augment="affine:10:0.1:0.1",
           optimizer_fn=_onecycle_adam(0.005), test_time_shift=1,
           notes="Aims at >= 99.6% on the MNIST test set in <= 15 minutes on 2 CPU cores (about 15 MFLOPs "
                 "per image forward). Each image is turned by up to 10 degrees, zoomed by up to 10% and moved "
                 "by up to 10% of its size (2.8 pixels). The OneCycle schedule spans steps_per_epoch x epochs: "
                 "pass the real steps_per_epoch to compiled() when the batch size or training set differs. "
                 "Test predictions average the softmax over 5 views of each image: itself and copies moved 1 "
                 "pixel up, down, left and right (cnnlab.training.predict_tta; no mirror images: they change "
                 "digits). About 30-40 s per epoch on 2 cores; BENCHMARKS.md has the measured accuracy."),
    Recipe("fashion_best", "Our Fashion-MNIST recipe: five 3x3 convs (32, 64x2, 128x2) with BN, each block "
           "max-pooled before its BN and ReLU, dropout, flips, shifts and random erasing, Adam with OneCycle, "
           "test accuracy averaged over 10 views of each image (itself, 1-pixel shifts, and their mirror images)",
           _fashion_best, batch_size=128, epochs=19, augment="flip:horizontal,shift:2:any,erase:0.25",
           dataset="fashion_mnist", optimizer_fn=_onecycle_adam(0.005), test_time_flip=True, test_time_shift=1,
           loss={"name": LOSS, "label_smoothing": 0.1},
           notes="Aims at >= 94% on the Fashion-MNIST test set in <= 30 minutes on 2 CPU cores. Horizontal "
                 "flips are label-preserving for clothing; a quarter of the images get a random rectangle "
                 "erased; cross-entropy with label smoothing 0.1. The OneCycle schedule spans steps_per_epoch x "
                 "epochs. Test predictions average the softmax over 10 views of each image: itself and copies "
                 "moved 1 pixel up, down, left and right, each with its mirror image "
                 "(cnnlab.training.predict_tta; the training shifts go up to 2 pixels). About 44 MFLOPs per "
                 "image; about 70-75 s per epoch on 2 cores with the mkl extra, testing included. "
                 "BENCHMARKS.md has the measured accuracy."),
    Recipe("digits_small", "Small CNN for scikit-learn's 8x8 digits (the default of `cnnlab train`)",
           _digits_small, batch_size=32, epochs=30, optimizer_fn=_cosine_adam(0.003),
           dataset="digits", input_shape=(8, 8, 1),
           notes="Inputs scaled /255. 1,437 training images, 30 epochs of 45 steps with Adam and cosine decay: "
                 "97.8-99.2% test accuracy over seeds, a few seconds on 2 cores."),
]

RECIPES = {r.name: r for r in _RECIPES}
NAMES = list(RECIPES)


def get(name):
    """The ``Recipe`` called ``name``; an unknown name raises ValueError suggesting the closest."""
    if isinstance(name, Recipe):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key not in RECIPES:
        raise unknown_name_error("model recipe", name, NAMES)
    return copy.deepcopy(RECIPES[key])  # callers may edit their copy freely


__all__ = ["Recipe", "NAMES", "RECIPES", "get"]

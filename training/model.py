"""Model architectures, all built by one code path, and their size figures."""
from __future__ import annotations

from pathlib import Path

from training.config import ARCHITECTURES, FeatureConfig
from training.quiet import import_tensorflow

import_tensorflow()  # before Keras, which imports TensorFlow: without its start-up chatter
import keras  # noqa: E402
from keras import layers  # noqa: E402


def batch_norm():
    # Momentum 0.9, not Keras' 0.99: a small dataset gives few steps per epoch, and the moving
    # statistics that validation and the converter use must settle within a few epochs.
    return layers.BatchNormalization(momentum=0.9)


def classifier(x, n_classes: int) -> keras.layers.Layer:
    """Class probabilities from a feature map: a dense layer, written as a convolution over the whole map.

    TFLM's int8 FULLY_CONNECTED rounds differently from LiteRT's reference kernel on some inputs,
    while CONV_2D is bit-exact in both; the convolution keeps the model provably equal on both runtimes.
    """
    x = layers.Conv2D(n_classes, kernel_size=x.shape[1:3], padding="valid")(x)
    return layers.Softmax()(layers.Reshape((n_classes,))(x))


def ds_cnn(inputs, n_classes: int, filters: int, blocks: int, dropout: float = 0.2) -> keras.layers.Layer:
    """Depthwise-separable CNN (Hello Edge): conv 10x4 stride 2, `blocks` x (depthwise 3x3 + pointwise), average pool."""
    x = layers.Conv2D(filters, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(batch_norm()(x))
    x = layers.Dropout(dropout)(x)
    for _ in range(blocks):
        x = layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
        x = layers.ReLU()(batch_norm()(x))
        x = layers.Conv2D(filters, (1, 1), use_bias=False)(x)
        x = layers.ReLU()(batch_norm()(x))
    x = layers.Dropout(2 * dropout)(x)
    x = layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    return classifier(x, n_classes)


def tiny_conv(inputs, n_classes: int) -> keras.layers.Layer:
    """TensorFlow Lite Micro's micro_speech model: one conv 10x8, 8 filters, stride 2, then dense."""
    x = layers.Conv2D(8, (10, 8), strides=(2, 2), padding="same", activation="relu")(inputs)
    x = layers.Dropout(0.5)(x)
    return classifier(x, n_classes)


BUILDERS = {
    # Ours: 46 filters keep int8 weights at ~57% of mlperf_dscnn's.
    "dscnn": lambda inputs, n: ds_cnn(inputs, n, filters=46, blocks=4),
    # MLPerf Tiny's keyword-spotting reference: 64 filters, four blocks.
    "mlperf_dscnn": lambda inputs, n: ds_cnn(inputs, n, filters=64, blocks=4),
    "tiny_conv": tiny_conv,
}


def build_model(arch: str, n_classes: int, cfg: FeatureConfig = FeatureConfig(), batch_size: int | None = None) -> keras.Model:
    """`batch_size=1` gives the static shapes a microcontroller model needs (no SHAPE/PACK ops)."""
    if arch not in ARCHITECTURES or arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    inputs = keras.Input(shape=(cfg.n_frames, cfg.n_mfcc, 1), batch_size=batch_size, name="mfcc")
    return keras.Model(inputs, BUILDERS[arch](inputs, n_classes), name=arch)


def warm_start(model: keras.Model, run: Path, freeze: bool) -> str:
    """Give `model` the weights of every layer of RUN/model_float.keras (the same architecture, trained on
    other words or classes) but the classifier, whose classes differ: a wake word then starts from features
    learnt on real speech. With `freeze`, the layers before the last block (the last depthwise convolution;
    tiny_conv: the classifier) keep those weights. Returns what it did."""
    source = keras.models.load_model(run / "model_float.keras")  # of the same architecture: run_folder.check_base
    mine, theirs = [layer for layer in model.layers if layer.weights], [layer for layer in source.layers if layer.weights]
    for layer, loaded in zip(mine[:-1], theirs[:-1]):
        layer.set_weights(loaded.get_weights())
    if freeze:
        depthwise = [i for i, layer in enumerate(model.layers) if isinstance(layer, layers.DepthwiseConv2D)]
        for layer in model.layers[: depthwise[-1] if depthwise else model.layers.index(mine[-1])]:
            layer.trainable = False
    return f"started from {run}: {len(mine) - 1} layers' weights" + ", frozen up to the last block" * freeze

"""MobileNetV2 (Sandler et al. 2018): inverted residuals with depthwise convs followed by BN."""

import keras

from bnkeras.training.models.layers import conv, norm_act

# (expansion, output channels, repeats, first stride)
BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mobilenet_v2(num_classes, input_shape, norm, alpha=1.0, name="mobilenet_v2"):
    inputs = keras.Input(input_shape, name="image")
    x = conv(_divisible(32 * alpha), 3, 2, norm, "stem_conv")(inputs)
    x = norm_act(x, norm, "stem_bn", relu_max=6.0)
    index = 0
    for expansion, channels, repeats, first_stride in BLOCKS:
        out = _divisible(channels * alpha)
        for repeat in range(repeats):
            strides = first_stride if repeat == 0 else 1
            block = f"block{index}"
            y = x
            if expansion != 1:
                y = conv(x.shape[-1] * expansion, 1, 1, norm, f"{block}_expand")(y)
                y = norm_act(y, norm, f"{block}_expand_bn", relu_max=6.0)
            y = conv(None, 3, strides, norm, f"{block}_depthwise", depthwise=True)(y)
            y = norm_act(y, norm, f"{block}_depthwise_bn", relu_max=6.0)
            y = conv(out, 1, 1, norm, f"{block}_project")(y)
            y = norm_act(y, norm, f"{block}_project_bn", activation=False)
            if strides == 1 and x.shape[-1] == out:
                y = keras.layers.Add(name=f"{block}_add")([x, y])
            x = y
            index += 1
    last = _divisible(1280 * max(alpha, 1.0))
    x = conv(last, 1, 1, norm, "head_conv")(x)
    x = norm_act(x, norm, "head_bn", relu_max=6.0)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)

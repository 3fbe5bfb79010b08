"""ResNet v1.5 (He et al. 2016; stride on the 3x3 conv of bottlenecks) with the ImageNet stem."""

import keras

from bnkeras.training.models.layers import basic_branch, conv, norm_act, residual_block

DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def _bottleneck(x, filters, strides, norm, zero_init, name):
    y = conv(filters, 1, 1, norm, f"{name}_conv1")(x)
    y = norm_act(y, norm, f"{name}_bn1")
    y = conv(filters, 3, strides, norm, f"{name}_conv2")(y)  # v1.5: stride here
    y = norm_act(y, norm, f"{name}_bn2")
    y = conv(filters * 4, 1, 1, norm, f"{name}_conv3")(y)
    y = norm_act(y, norm, f"{name}_bn3", activation=False, zero_gamma=zero_init)
    return y, filters * 4


def resnet(depth, num_classes, input_shape, norm, zero_init_residual=False, name=None):
    """ResNet-18/34/50 v1.5: 7x7/2 conv stem and 3x3/2 max pooling, four stages."""
    kind, blocks = DEPTHS[depth]
    branch = basic_branch if kind == "basic" else _bottleneck
    inputs = keras.Input(input_shape, name="image")
    x = conv(64, 7, 2, norm, "stem_conv")(inputs)
    x = norm_act(x, norm, "stem_bn")
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, count in enumerate(blocks):
        filters = 64 * 2**stage
        for index in range(count):
            strides = 2 if stage > 0 and index == 0 else 1
            block_name = f"stage{stage + 1}_block{index + 1}"
            x = residual_block(x, branch, filters, strides, norm, zero_init_residual, block_name)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")

"""CIFAR ResNets (He et al. 2016, section 4.2): depth 6n + 2, 3 stages of basic blocks."""

import keras

from bnkeras.training.models.layers import basic_branch, conv, norm_act, residual_block
from bnkeras.training.models.norms import get_norm


def cifar_resnet(
    depth=20,
    num_classes=10,
    input_shape=(32, 32, 3),
    norm="bn",
    width=16,
    zero_init_residual=False,
    name=None,
    **norm_options,
):
    """ResNet-`depth` for small images (depth = 6n + 2: 8, 14, 20, 32, 44, 56, 110).

    `norm` is a name for `get_norm` or a layer maker (None: no norm, convs get a
    bias); `width` is the first stage's filters (16 in the paper).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"A CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32, 56, 110). Received: depth={depth}"
        )
    blocks = (depth - 2) // 6
    norm = get_norm(norm, **norm_options) if isinstance(norm, str) else norm
    inputs = keras.Input(input_shape, name="image")
    x = conv(width, 3, 1, norm, "stem_conv")(inputs)
    x = norm_act(x, norm, "stem_bn")
    for stage in range(3):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = residual_block(
                x,
                basic_branch,
                width * 2**stage,
                strides,
                norm,
                zero_init_residual,
                f"stage{stage + 1}_block{block + 1}",
            )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")

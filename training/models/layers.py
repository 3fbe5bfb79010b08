"""Building blocks shared by the models: a conv with bias only when there is no norm, the
injected norm with its activation, and the residual blocks of the ResNets."""

import keras


def conv(filters, kernel, strides, norm, name, depthwise=False):
    """A conv without bias when a norm follows it (the norm's beta is the bias)."""
    common = dict(strides=strides, padding="same", use_bias=norm is None, name=name)
    if depthwise:
        return keras.layers.DepthwiseConv2D(kernel, depthwise_initializer="he_normal", **common)
    return keras.layers.Conv2D(filters, kernel, kernel_initializer="he_normal", **common)


def norm_act(x, norm, name, activation=True, zero_gamma=False, relu_max=None):
    """The injected norm (skipped for norm=None), then ReLU (ReLU6 with relu_max=6)."""
    if norm is not None:
        kwargs = {"gamma_initializer": "zeros"} if zero_gamma else {}
        x = norm(name=name, **kwargs)(x)
    if activation:
        x = keras.layers.ReLU(max_value=relu_max, name=f"{name}_relu")(x)
    return x


def basic_branch(x, filters, strides, norm, zero_init, name):
    """The two 3x3 convs of a basic residual block; returns (output, its channels)."""
    y = conv(filters, 3, strides, norm, f"{name}_conv1")(x)
    y = norm_act(y, norm, f"{name}_bn1")
    y = conv(filters, 3, 1, norm, f"{name}_conv2")(y)
    y = norm_act(y, norm, f"{name}_bn2", activation=False, zero_gamma=zero_init)
    return y, filters


def residual_block(x, branch, filters, strides, norm, zero_init, name):
    """ReLU(branch(x) + shortcut): the shortcut is a strided 1x1 conv + norm when the
    shape changes, else the identity. `zero_init` zero-initialises the branch's last gamma."""
    y, out_filters = branch(x, filters, strides, norm, zero_init, name)
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut = conv(out_filters, 1, strides, norm, f"{name}_proj")(x)
        shortcut = norm_act(shortcut, norm, f"{name}_proj_bn", activation=False)
    x = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)

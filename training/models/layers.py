"""Building blocks shared by the models: a conv with bias only when there is no norm."""

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

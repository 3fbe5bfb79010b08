"""`bnkeras.ChannelAffine`: the inference form of a BN that export could not fold."""

from typing import Any

import keras
from keras import ops

from bnkeras.layers._utils import as_int, is_half


@keras.saving.register_keras_serializable(package="bnkeras")
class ChannelAffine(keras.layers.Layer):
    """A per-channel affine map, `y = x * scale + offset`: BN frozen in inference form.

    `bnkeras.export.fold_batchnorm` puts one in place of each BN it cannot fold
    into a neighbouring conv/dense layer, with `scale = gamma / sqrt(moving_variance
    + epsilon)` and `offset = beta - moving_mean * scale`, so the exported model
    behaves the same whatever `training` it is called with. float16/bfloat16 inputs
    are computed in float32 and cast back.

    Args:
        axis: Integer, the channel axis.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Input tensor of any rank. The layer has no training behaviour;
            its weights are not trainable.
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = as_int("axis", axis)
        self.supports_masking = True

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        rank = len(input_shape)
        if not -rank <= self.axis < rank or input_shape[self.axis] is None:
            raise ValueError(
                f"Argument `axis` must index a defined axis of the input shape {tuple(input_shape)}. "
                f"Received: axis={self.axis}"
            )
        self._shape = [1] * rank
        self._shape[self.axis] = input_shape[self.axis]
        shape = (input_shape[self.axis],)
        self.scale = self.add_weight(
            shape=shape, name="scale", initializer="ones", trainable=False, autocast=False
        )
        self.offset = self.add_weight(
            shape=shape, name="offset", initializer="zeros", trainable=False, autocast=False
        )

    def call(self, inputs: Any, mask: Any = None) -> Any:
        x = ops.cast(inputs, "float32") if is_half(inputs.dtype) else inputs
        scale = ops.reshape(ops.cast(self.scale, x.dtype), self._shape)
        offset = ops.reshape(ops.cast(self.offset, x.dtype), self._shape)
        return ops.cast(x * scale + offset, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}

"""Perception heads: images to the feature vector the LTC network reads.

:class:`ConvHead` is the convolutional head of the NCP lane-keeping policy (Lechner et al. 2020,
*Neural circuit policies enabling auditable autonomy*, Nat. Mach. Intell. 2:642-652, Methods and
Table 2: 79,420 parameters on 78x200x3 images), written for NCHW tensors with TensorFlow's
``padding="same"`` behaviour reproduced exactly (output size ceil(n / stride), the extra padding
pixel on the bottom/right), so TF-trained weights can be ported layer by layer (TF kernels
``(kh, kw, cin, cout)`` -> torch ``(cout, cin, kh, kw)``).

Shapes for the default 78x200 input (B = batch)::

    (B, 3, 78, 200)  per-image standardization
    (B, 24, 39, 100) conv 5x5 stride 2 + ReLU      pad rows (1, 2), cols (1, 2)
    (B, 36, 20, 50)  conv 5x5 stride 2 + ReLU      pad rows (2, 2), cols (1, 2)
    (B, 48, 10, 25)  conv 3x3 stride 2 + ReLU      pad rows (0, 1), cols (0, 1)
    (B, 64, 10, 25)  conv 3x3 stride 1 + ReLU      pad (1, 1)
    (B, 8, 10, 25)   conv 3x3 stride 1 + ReLU      pad (1, 1)
    (B, 8, 250)      each channel flattened row-major (as TF's NHWC channel slice)
    (B, 8, 4)        channel c through its own Dense(250 -> 4) + ReLU
    (B, 32)          features, channel-major: feature 4c + k
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvHead", "per_image_standardization", "same_padding", "same_output_size"]

# (out_channels, kernel, stride) of the NCP paper's head.
CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (24, 5, 2),
    (36, 5, 2),
    (48, 3, 2),
    (64, 3, 1),
    (8, 3, 1),
)


def same_output_size(size: int, stride: int) -> int:
    """TF ``same`` output length: ``ceil(size / stride)``."""
    return -(-size // stride)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``same`` padding ``(before, after)`` along one axis; the odd pixel goes after."""
    total = max((same_output_size(size, stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def per_image_standardization(images: Tensor) -> Tensor:
    """Whitening: ``(x - mean) / max(std, 1 / sqrt(N))`` per image, N = C*H*W.

    Same as ``tf.image.per_image_standardization``.

    ``images`` is ``(B, C, H, W)`` (any range); std is the population standard deviation.
    """
    flat = images.flatten(1)
    mean = flat.mean(1, keepdim=True)
    std = flat.std(1, correction=0, keepdim=True)
    floor = 1.0 / math.sqrt(flat.shape[1])
    return ((flat - mean) / std.clamp(min=floor)).view_as(images)


class ConvHead(nn.Module):
    """NCP-paper conv head: ``(B, 3, H, W)`` float images -> ``(B, 32)`` features.

    Args:
        image_height, image_width: input size the per-channel dense layers are sized for
            (78 x 200 gives final 10 x 25 maps and 79,420 parameters).
        in_channels: 3.
        dense_units: outputs per channel of the final per-channel dense layer (4).

    Initialization: Glorot-uniform kernels (Keras default), conv biases 0.01, dense biases 0.

    Raises:
        ValueError: (in ``forward``) an input of another shape.
    """

    def __init__(
        self,
        image_height: int = 78,
        image_width: int = 200,
        in_channels: int = 3,
        dense_units: int = 4,
    ) -> None:
        super().__init__()
        self.image_height = int(image_height)
        self.image_width = int(image_width)
        self.in_channels = int(in_channels)
        self.convs = nn.ModuleList()
        self._paddings: list[tuple[int, int, int, int]] = []
        h, w, c = self.image_height, self.image_width, self.in_channels
        for out_c, k, s in CONV_LAYERS:
            conv = nn.Conv2d(c, out_c, k, stride=s)
            nn.init.xavier_uniform_(conv.weight)
            assert conv.bias is not None
            nn.init.constant_(conv.bias, 0.01)
            self.convs.append(conv)
            top, bottom = same_padding(h, k, s)
            left, right = same_padding(w, k, s)
            self._paddings.append((left, right, top, bottom))  # F.pad order: last dim first
            h, w, c = same_output_size(h, s), same_output_size(w, s), out_c
        self.map_height, self.map_width, self.channels = h, w, c
        self.dense_units = int(dense_units)
        fan_in, fan_out = h * w, self.dense_units
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        self.dense_weight = nn.Parameter(torch.empty(c, fan_in, fan_out).uniform_(-bound, bound))
        self.dense_bias = nn.Parameter(torch.zeros(c, fan_out))

    @property
    def feature_dim(self) -> int:
        """Output features: channels x dense_units (32)."""
        return self.channels * self.dense_units

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """All conv activations (after ReLU), shallow to deep, for saliency (VisualBackProp).

        ``images`` is ``(B, 3, H, W)``; returns 5 tensors ``(B, C_l, H_l, W_l)``.
        """
        expected = (self.in_channels, self.image_height, self.image_width)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        x = per_image_standardization(images)
        maps = []
        for conv, pad in zip(self.convs, self._paddings, strict=True):
            x = F.relu(conv(F.pad(x, pad)))
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images -> ``(B, 32)`` features (channel-major)."""
        x = self.feature_maps(images)[-1].flatten(2)  # (B, 8, 250)
        y = torch.einsum("bcn,cnk->bck", x, self.dense_weight) + self.dense_bias
        return F.relu(y).flatten(1)

"""Perception heads: images to the feature vector the LTC network reads.

Two heads, selected by ``PolicyConfig.head``: :class:`ConvHead` (``"ncp_conv"``, the NCP paper's,
32 features) and :class:`DroneTrunk` (``"drone_trunk"``, Chahine et al. 2023's, 128 features).
Both take float images in [0, 1] and normalise them inside (``normalization``):
``"per_image_standardization"`` (TF's whitening, the NCP paper) or
``"drone_channel_standardization"`` (``(x - mean_c) / sqrt(var_c)`` with the drone paper's
per-channel RGB statistics).

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

__all__ = [
    "DRONE_CHANNEL_MEAN",
    "DRONE_CHANNEL_VARIANCE",
    "HEADS",
    "NORMALIZATIONS",
    "ConvHead",
    "FEATURE_NORMS",
    "DroneTrunk",
    "build_head",
    "head_feature_dim",
    "normalize",
    "normalize_features",
    "per_image_standardization",
    "same_padding",
    "same_output_size",
]

HEADS = ("ncp_conv", "drone_trunk")
NORMALIZATIONS = ("per_image_standardization", "drone_channel_standardization")
#: Normalisations of a head's feature vector (see :func:`normalize_features`).
FEATURE_NORMS = ("none", "layer")
# Keras Normalization layer of Chahine et al. 2023 (drone_causality, keras_models.py), RGB.
DRONE_CHANNEL_MEAN = (0.41718618, 0.48529191, 0.38133072)
DRONE_CHANNEL_VARIANCE = (0.057, 0.05, 0.061)

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


def normalize(images: Tensor, normalization: str) -> Tensor:
    """Apply one of :data:`NORMALIZATIONS` to ``(B, 3, H, W)`` RGB images in [0, 1].

    Raises:
        ValueError: an unknown normalization.
    """
    if normalization == "per_image_standardization":
        return per_image_standardization(images)
    if normalization == "drone_channel_standardization":
        mean = images.new_tensor(DRONE_CHANNEL_MEAN).view(1, 3, 1, 1)
        std = images.new_tensor(DRONE_CHANNEL_VARIANCE).sqrt().view(1, 3, 1, 1)
        return (images - mean) / std
    raise ValueError(f"unknown normalization {normalization!r}; known: {NORMALIZATIONS}")


def _check_images(
    images: Tensor, channels: int, height: int, width: int, dtype: torch.dtype
) -> Tensor:
    """``images`` in the head's ``dtype``: float16/bfloat16/float64 are cast; integer and bool
    images are refused, since their values are not in [0, 1] (a cast uint8 image would be 255
    times brighter than any training input: silently wrong under the drone normalisation)."""
    expected = (channels, height, width)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
        )
    if images.dtype == dtype:
        return images
    if not images.is_floating_point():
        raise TypeError(
            f"images have dtype {images.dtype}; expected floating-point images in [0, 1] "
            f"({dtype}; float16, bfloat16 and float64 are cast). Scale integer images first, "
            "e.g. images.float() / 255"
        )
    return images.to(dtype)


class ConvHead(nn.Module):
    """NCP-paper conv head: ``(B, 3, H, W)`` float images -> ``(B, 32)`` features.

    Args:
        image_height, image_width: input size the per-channel dense layers are sized for
            (78 x 200 gives final 10 x 25 maps and 79,420 parameters).
        in_channels: 3.
        dense_units: outputs per channel of the final per-channel dense layer (4).
        normalization: one of :data:`NORMALIZATIONS` (the paper: per-image standardization).

    Initialization: Glorot-uniform kernels (Keras default), conv biases 0.01, dense biases 0.

    Input dtype: floating-point images are cast to the weights' dtype (float16, bfloat16,
    float64); integer and bool images raise ``TypeError`` (their values are not in [0, 1]).
    Strided (non-contiguous) images are fine.

    Raises:
        ValueError: (in ``forward``) an input of another shape.
        TypeError: (in ``forward``) integer, bool or complex images.
    """

    def __init__(
        self,
        image_height: int = 78,
        image_width: int = 200,
        in_channels: int = 3,
        dense_units: int = 4,
        normalization: str = "per_image_standardization",
    ) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; known: {NORMALIZATIONS}")
        self.normalization = normalization
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
        dtype = self.dense_weight.dtype
        images = _check_images(images, self.in_channels, self.image_height, self.image_width, dtype)
        x = normalize(images, self.normalization)
        maps = []
        for conv, pad in zip(self.convs, self._paddings, strict=True):
            x = F.relu(conv(F.pad(x, pad)))
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float images -> ``(B, 32)`` features (channel-major)."""
        return self.features_and_maps(images)[0]

    def features_and_maps(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """One pass: the features ``(B, 32)`` (as :meth:`forward`) and the conv activations
        (as :meth:`feature_maps`), for the attention monitor on the control path."""
        maps = self.feature_maps(images)
        x = maps[-1].flatten(2)  # (B, 8, 250)
        y = torch.einsum("bcn,cnk->bck", x, self.dense_weight) + self.dense_bias
        return F.relu(y).flatten(1), maps


# (out_channels, kernel, stride) of the drone paper's trunk, "valid" padding, ReLU.
DRONE_CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (24, 5, 2),
    (36, 5, 2),
    (48, 5, 2),
    (64, 3, 1),
    (16, 3, 2),
)


class DroneTrunk(nn.Module):
    """Chahine et al. 2023 (*Robust flight navigation out of distribution with liquid neural
    networks*, Sci. Robot. 8:eadc8892) image trunk: ``(B, 3, H, W) -> (B, 128)`` features.

    Conv (24,5,2) (36,5,2) (48,5,2) (64,3,1) (16,3,2), Keras ``valid`` padding, ReLU; flatten in
    NHWC order (as Keras, so TF weights port directly: kernels ``(kh, kw, cin, cout)`` -> torch
    ``(cout, cin, kh, kw)``, the dense kernel as is, transposed); ``Dense(128)`` linear; dropout
    (training only). For 144x256 images the maps are 70x126, 33x61, 15x29, 13x27, 6x13 and the
    trunk has 263,524 parameters (159,872 in the dense layer). The paper's second input (a 2-D
    vector through ``Dense(128)``) is not part of this trunk.

    Args:
        image_height, image_width: input size (the paper: 144 x 256).
        features: dense width (128).
        dropout: dropout rate after the dense layer (0.1 in the paper; inactive in eval mode).
        normalization: one of :data:`NORMALIZATIONS` (the paper: drone channel statistics).

    Input dtype: as :class:`ConvHead` (floating point cast, integer images refused).

    Raises:
        ValueError: an image too small for the convolutions, an unknown normalization, or (in
            ``forward``) an input of another shape.
        TypeError: (in ``forward``) integer, bool or complex images.
    """

    def __init__(
        self,
        image_height: int = 144,
        image_width: int = 256,
        features: int = 128,
        dropout: float = 0.1,
        normalization: str = "drone_channel_standardization",
    ) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; known: {NORMALIZATIONS}")
        self.normalization = normalization
        self.image_height, self.image_width = int(image_height), int(image_width)
        self.in_channels = 3
        self.convs = nn.ModuleList()
        h, w, c = self.image_height, self.image_width, self.in_channels
        for layer, (out_c, k, s) in enumerate(DRONE_CONV_LAYERS):
            h, w = (h - k) // s + 1, (w - k) // s + 1
            if h < 1 or w < 1:
                raise ValueError(
                    f"image {self.image_height}x{self.image_width} is too small for the drone "
                    f"trunk (conv layer {layer + 1} has no output; at least 61x61 is needed)"
                )
            conv = nn.Conv2d(c, out_c, k, stride=s)
            nn.init.xavier_uniform_(conv.weight)
            assert conv.bias is not None
            nn.init.zeros_(conv.bias)
            self.convs.append(conv)
            c = out_c
        self.map_height, self.map_width, self.channels = h, w, c
        self.dense = nn.Linear(h * w * c, int(features))
        nn.init.xavier_uniform_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)
        self.dropout = nn.Dropout(float(dropout))

    @property
    def feature_dim(self) -> int:
        return int(self.dense.out_features)

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """All conv activations (after ReLU), shallow to deep; 5 tensors ``(B, C_l, H_l, W_l)``."""
        dtype = self.dense.weight.dtype
        images = _check_images(images, self.in_channels, self.image_height, self.image_width, dtype)
        x = normalize(images, self.normalization)
        maps = []
        for conv in self.convs:
            x = F.relu(conv(x))
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float RGB images in [0, 1] -> ``(B, 128)`` features."""
        return self.features_and_maps(images)[0]

    def features_and_maps(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """One pass: the features ``(B, 128)`` and the conv activations (as
        :meth:`feature_maps`), for the attention monitor on the control path."""
        maps = self.feature_maps(images)
        x = maps[-1].permute(0, 2, 3, 1).flatten(1)  # NHWC, as Keras
        result: Tensor = self.dropout(self.dense(x))
        return result, maps


def normalize_features(features: Tensor, mode: str) -> Tensor:
    """Normalise a head's ``(B, ..., F)`` features: ``"none"`` leaves them, ``"layer"``
    standardises each sample's vector over its ``F`` features (layer normalisation without
    parameters, eps 1e-5; Ba et al. 2016). The policy applies it at the core's input
    (``Policy.step``/``run_sequence``), so that ``Policy.features`` stays the head's own output:
    the out-of-distribution monitor reads that, and per-frame standardisation would hide from it
    exactly the brightness and contrast shifts it should see.

    Why: the head's ReLU features are unbounded, and training grows them (the bundled NCP-19's
    went from a frame-to-frame spread of about 0.004 at initialisation to 10-60), while an LTC
    sensory synapse is a sigmoid of width about 1/sigma (0.2); the synapses then act as switches
    and the policy's output becomes a staircase of a few levels. Per-sample standardisation keeps
    the features at unit scale whatever the head's gain (the core's input mapping, e.g. the
    LTC's affine ``input_w``/``input_b``, still scales them per feature).

    Raises:
        ValueError: unknown ``mode``.
    """
    if mode == "none":
        return features
    if mode == "layer":
        # Written out (not F.layer_norm) so that ONNX export sees no shape-dependent argument.
        mean = features.mean(-1, keepdim=True)
        var = features.var(-1, unbiased=False, keepdim=True)
        return (features - mean) * torch.rsqrt(var + 1e-5)
    raise ValueError(f"unknown feature normalisation {mode!r}; known: {FEATURE_NORMS}")


def build_head(
    head: str,
    image_height: int,
    image_width: int,
    normalization: str,
) -> ConvHead | DroneTrunk:
    """The head named ``head`` (one of :data:`HEADS`) for the given input size.

    Raises:
        ValueError: unknown head, normalization, or an image too small for the head.
    """
    if head == "ncp_conv":
        return ConvHead(image_height, image_width, normalization=normalization)
    if head == "drone_trunk":
        return DroneTrunk(image_height, image_width, normalization=normalization)
    raise ValueError(f"unknown head {head!r}; known: {HEADS}")


def head_feature_dim(head: str) -> int:
    """Features a head gives: 32 (``ncp_conv``: 8 channels x 4) or 128 (``drone_trunk``).

    Raises:
        ValueError: unknown head.
    """
    dims = {"ncp_conv": 32, "drone_trunk": 128}
    if head not in dims:
        raise ValueError(f"unknown head {head!r}; known: {HEADS}")
    return dims[head]

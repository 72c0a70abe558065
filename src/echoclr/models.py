"""Video encoders, the pretraining heads and the fine-tuning classifier.

Encoders map (B, C, T, H, W) clips to (B, F) features ``h``: torchvision's r3d_18,
r2plus1d_18 and mc3_18 (``fc`` replaced by identity, 512-d), and ``r3d_tiny``, a narrow 3D
ResNet for CPU demos and tests. Weight files are read and written by :mod:`echoclr.weights`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models import video as tv_video

from echoclr.errors import UserError

TORCHVISION_ENCODERS = {
    "r3d_18": (tv_video.r3d_18, tv_video.R3D_18_Weights.KINETICS400_V1),
    "r2plus1d_18": (tv_video.r2plus1d_18, tv_video.R2Plus1D_18_Weights.KINETICS400_V1),
    "mc3_18": (tv_video.mc3_18, tv_video.MC3_18_Weights.KINETICS400_V1),
}
ENCODERS = (*TORCHVISION_ENCODERS, "r3d_tiny")


class _TinyBlock(nn.Module):
    """A 3D basic residual block (two 3x3x3 convs)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class TinyR3D(nn.Module):
    """r3d_18's shape (stem, four stages, global pool) with one block per stage and a set width.

    Feature dim is ``8 * width``. Used where r3d_18 is too slow: CPU demos and tests.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], width
        for i, w in enumerate(widths):
            layers.append(_TinyBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Identity()
        self.feature_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def build_encoder(name: str = "r3d_18", *, kinetics_state: Mapping | None = None,
                  width: int = 16) -> nn.Module:
    """An encoder with ``fc`` = identity and a ``feature_dim`` attribute.

    Args:
        name: one of :data:`ENCODERS`.
        kinetics_state: torchvision's Kinetics-400 state dict for ``name`` (its ``fc`` included),
            loaded strictly before ``fc`` is replaced; None: random init. Read it with
            :func:`echoclr.weights.load_kinetics_state`.
        width: base width of ``r3d_tiny`` (ignored otherwise).
    """
    if name == "r3d_tiny":
        if kinetics_state is not None:
            raise UserError("r3d_tiny has no Kinetics-400 weights: use --init random or a "
                            "pretraining encoder.pt, or a torchvision encoder")
        return TinyR3D(width)
    if name not in TORCHVISION_ENCODERS:
        raise UserError(f"unknown encoder {name!r}; choose from {ENCODERS}")
    model = TORCHVISION_ENCODERS[name][0](weights=None)
    if kinetics_state is not None:
        model.load_state_dict(kinetics_state, strict=True)
    model.feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model


class ProjectionHead(nn.Module):
    """SimCLR projection: Linear(F→256, no bias) → ReLU → Linear(256→128, no bias)."""

    def __init__(self, in_dim: int = 512, hidden_dim: int = 256, out_dim: int = 128,
                 batch_norm: bool = False):
        super().__init__()
        norm = [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), *norm,
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim, bias=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class PretrainModel(nn.Module):
    """Encoder + projection head + optional frame-reordering head (F → clip_len! logits)."""

    def __init__(self, encoder: nn.Module, *, n_orderings: int = 0, proj_batch_norm: bool = False):
        super().__init__()
        self.encoder = encoder
        self.projection = ProjectionHead(encoder.feature_dim, batch_norm=proj_batch_norm)
        self.reorder = nn.Linear(encoder.feature_dim, n_orderings) if n_orderings else None

    def forward(self, x: torch.Tensor):
        """(B, C, T, H, W) → h (B, F), z (B, 128), reorder logits (B, K) or None."""
        h = self.encoder(x)
        z = self.projection(h)
        return h, z, (self.reorder(h) if self.reorder is not None else None)


class Classifier(nn.Module):
    """Encoder → dropout → logits: one for a binary task, one per class for a multi-class one."""

    def __init__(self, encoder: nn.Module, *, dropout: float = 0.25, n_outputs: int = 1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.feature_dim, n_outputs)

    @property
    def n_outputs(self) -> int:
        return self.head.out_features

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.dropout(h))
        return logits.squeeze(1) if self.n_outputs == 1 else logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) → logits (B,), or (B, K) for K classes."""
        return self._logits(self.encoder(x))

    def forward_frozen(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the encoder run without gradients (linear probe, head-only
        epochs)."""
        with torch.no_grad():
            h = self.encoder(x)
        return self._logits(h.float())

    def set_head(self, weight: torch.Tensor, bias) -> None:
        """Set the logit layer (a fitted probe, for LP-FT): weight (F,) and a float bias, or
        (K, F) and (K,) for K classes."""
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight).reshape(self.head.weight.shape))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).reshape(-1))

    def head_parameters(self):
        """The parameters after the encoder (the logit layer)."""
        return self.head.parameters()

    def encoder_parameters(self):
        return self.encoder.parameters()

    def train_head(self) -> Classifier:
        """Training mode for the head, evaluation mode for the encoder (its BatchNorm statistics
        stay fixed while it is frozen)."""
        self.train()
        self.encoder.eval()
        return self

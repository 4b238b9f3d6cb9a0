"""Projection head and dual-softmax matching (as in Loc2).

The head maps frozen DINOv2 patch tokens to matching descriptors: a few 3x3 convolutions
(local context), one multi-head self-attention layer (global context), a linear projection and
L2 normalisation. :class:`DualSoftmaxMatcher` scores two descriptor sets by cosine similarity
divided by a temperature, appends a learnable dustbin row and column, and multiplies the row-
and column-wise softmaxes; the dustbin absorbs points without a counterpart.
"""

from __future__ import annotations

import math
from typing import Any

from cvgl_ros.models.checkpoint import DualSoftmaxConfig, HeadConfig
from cvgl_ros.models.errors import require

__all__ = ["DualSoftmaxConfig", "DualSoftmaxMatcher", "HeadConfig", "ProjectionHead"]

torch: Any = require("torch", "torch", "the projection head")
nn = torch.nn
Module: Any = torch.nn.Module
F = torch.nn.functional


class ProjectionHead(Module):  # type: ignore[misc]
    """Patch tokens -> L2-normalised matching descriptors.

    Input ``tokens``: (B, h, w, in_dim) float32. Output: (B, h, w, out_dim) float32, unit norm.
    """

    def __init__(self, config: HeadConfig | None = None) -> None:
        super().__init__()
        self.config = config or HeadConfig()
        c = self.config
        layers: list[Any] = []
        in_ch = c.in_dim
        for _ in range(c.num_conv_layers):
            layers += [nn.Conv2d(in_ch, c.hidden_dim, 3, padding=1), nn.GELU()]
            in_ch = c.hidden_dim
        self.convs = nn.Sequential(*layers)
        self.attn_norm = nn.LayerNorm(c.hidden_dim)
        # Explicit attention (not nn.MultiheadAttention, whose inference fast path has no ONNX
        # export).
        self.qkv = nn.Linear(c.hidden_dim, 3 * c.hidden_dim)
        self.attn_out = nn.Linear(c.hidden_dim, c.hidden_dim)
        self.out_norm = nn.LayerNorm(c.hidden_dim)
        self.proj = nn.Linear(c.hidden_dim, c.out_dim)

    def forward(self, tokens: Any) -> Any:
        b, h, w, _ = tokens.shape
        x = self.convs(tokens.permute(0, 3, 1, 2))  # (B, hidden, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, hidden)
        x = x + self._self_attention(self.attn_norm(x))
        x = self.proj(self.out_norm(x))
        x = F.normalize(x, dim=-1)
        return x.reshape(b, h, w, self.config.out_dim)

    def _self_attention(self, x: Any) -> Any:
        b, n, c = x.shape
        heads = self.config.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, c / heads)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (c // heads) ** -0.5, dim=-1)
        return self.attn_out((attn @ v).transpose(1, 2).reshape(b, n, c))


class DualSoftmaxMatcher(Module):  # type: ignore[misc]
    """Dual-softmax assignment with a learnable temperature and dustbin.

    Input: ``desc_a`` (B, N, D) and ``desc_b`` (B, M, D) L2-normalised descriptors.
    Output: ``probs`` (B, N, M) float32 match probabilities; each row and each column sums to
    at most 1 (the remainder is the probability of the dustbin, i.e. of no match).
    """

    def __init__(self, config: DualSoftmaxConfig | None = None) -> None:
        super().__init__()
        c = config or DualSoftmaxConfig()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(c.temperature)))
        self.dustbin = nn.Parameter(torch.tensor(float(c.dustbin_score)))

    def forward(self, desc_a: Any, desc_b: Any) -> Any:
        scores = torch.einsum("bnd,bmd->bnm", desc_a, desc_b) / self.log_temperature.exp()
        b, n, m = scores.shape
        # Dustbin row/column; the corner stays at the dustbin logit too.
        bin_col = self.dustbin.expand(b, n, 1)
        bin_row = self.dustbin.expand(b, 1, m + 1)
        aug = torch.cat([torch.cat([scores, bin_col], dim=2), bin_row], dim=1)
        probs = F.softmax(aug, dim=2) * F.softmax(aug, dim=1)
        return probs[:, :n, :m]

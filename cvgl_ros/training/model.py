"""The trainable part of the learned matcher: projection head + dual-softmax scalars.

Uses the runtime's own modules (:class:`cvgl_ros.models.head.ProjectionHead`,
:class:`~cvgl_ros.models.head.DualSoftmaxMatcher`), so what is trained is exactly what the node
runs, and exports to the runtime's matcher checkpoint format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cvgl_ros.models.checkpoint import (
    DualSoftmaxConfig,
    HeadConfig,
    MatcherCheckpointConfig,
    load_matcher_checkpoint,
    save_matcher_checkpoint,
)
from cvgl_ros.models.head import DualSoftmaxMatcher, ProjectionHead


class TrainableMatcher(torch.nn.Module):
    """Head + dual softmax over precomputed backbone tokens.

    Args:
        head_config: projection head architecture.
        matcher_config: initial temperature and dustbin logit.
    """

    def __init__(self, head_config: HeadConfig, matcher_config: DualSoftmaxConfig) -> None:
        super().__init__()
        self.head_config = head_config
        self.matcher_config = matcher_config
        self.head = ProjectionHead(head_config)
        self.matcher = DualSoftmaxMatcher(matcher_config)

    def forward(
        self, ground_tokens: torch.Tensor, aerial_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score every ground cell against every aerial cell.

        Args:
            ground_tokens: (B, hg, wg, C) float backbone tokens of the ground images.
            aerial_tokens: (B, ha, wa, C) float backbone tokens of the aerial patches.

        Returns:
            ``(logits, probs)``: (B, hg*wg, ha*wa) similarity / temperature (for infoNCE) and
            the dual-softmax probabilities with the dustbin removed (float32).
        """
        desc_g = self.head(ground_tokens).flatten(1, 2)
        desc_a = self.head(aerial_tokens).flatten(1, 2)
        logits = torch.einsum("bnd,bmd->bnm", desc_g, desc_a) / self.matcher.log_temperature.exp()
        probs = self.matcher(desc_g, desc_a)
        return logits, probs

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """``head.*`` and ``matcher.*`` tensors for the runtime checkpoint."""
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        tensors.update({f"matcher.{k}": v for k, v in self.matcher.state_dict().items()})
        return tensors

    def export(
        self,
        path: str | Path,
        backbone_id: str,
        ground_size_px: tuple[int, int],
        aerial_size_px: tuple[int, int],
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[Path, Path]:
        """Write the node's matcher checkpoint (``.safetensors`` + ``.json``).

        Returns:
            (weights path, json path).
        """
        config = MatcherCheckpointConfig(
            backbone_id=backbone_id,
            head=self.head_config,
            matcher=self.matcher_config,
            ground_size_px=ground_size_px,
            aerial_size_px=aerial_size_px,
            metadata=dict(metadata or {}),
        )
        return save_matcher_checkpoint(path, config, self.checkpoint_tensors())

    def load_checkpoint(self, path: str | Path) -> None:
        """Initialise from a runtime matcher checkpoint (fine-tuning).

        Raises:
            cvgl_ros.models.errors.CheckpointError: unreadable or incompatible checkpoint.
        """
        ckpt = load_matcher_checkpoint(path)
        if ckpt.config.head != self.head_config:
            from cvgl_ros.models.errors import CheckpointError

            raise CheckpointError(
                f"{path}: head {ckpt.config.head} differs from the configured {self.head_config}"
            )
        self.head.load_state_dict({k: torch.from_numpy(v) for k, v in ckpt.head_state().items()})
        self.matcher.load_state_dict(
            {
                k[len("matcher.") :]: torch.from_numpy(v)
                for k, v in ckpt.tensors.items()
                if k.startswith("matcher.")
            }
        )

"""torch modules composed for inference and export (backbone + head, full matcher, depth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvgl_ros.models.backbone import DinoBackbone, dinov2_config, load_dinov2, torch
from cvgl_ros.models.checkpoint import MatcherCheckpoint, MatcherCheckpointConfig
from cvgl_ros.models.errors import CheckpointError
from cvgl_ros.models.head import DualSoftmaxMatcher, ProjectionHead

nn = torch.nn
Module: Any = torch.nn.Module


def _load_module_state(module: Any, state: dict[str, np.ndarray], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tensors = {}
    for key, arr in state.items():
        if tuple(arr.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{what}: {key} has shape {tuple(arr.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
        tensors[key] = torch.from_numpy(np.array(arr, dtype=np.float32))
    module.load_state_dict(tensors, strict=True)


class FeaturesNetwork(Module):  # type: ignore[misc]
    """images (B, 3, H, W) float32 RGB in [0, 1] -> descriptors (B, H/14, W/14, D), unit norm."""

    def __init__(self, backbone: Any, head: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Any) -> Any:
        return self.head(self.backbone(images))

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: MatcherCheckpoint | MatcherCheckpointConfig,
        backbone_weights_path: str | Path | None,
        **random_backbone_kwargs: Any,
    ) -> FeaturesNetwork:
        """Build from a checkpoint (or just its config: random head) and backbone weights."""
        config = checkpoint.config if isinstance(checkpoint, MatcherCheckpoint) else checkpoint
        if backbone_weights_path:
            dino = load_dinov2(backbone_weights_path, config.backbone_id)
        else:
            dino = torch_dinov2_random(config.backbone_id, **random_backbone_kwargs)
        head = ProjectionHead(config.head)
        if isinstance(checkpoint, MatcherCheckpoint):
            _load_module_state(head, checkpoint.head_state(), "matcher checkpoint head")
        net: FeaturesNetwork = cls(DinoBackbone(dino), head).eval()
        return net


class FullMatcherNetwork(Module):  # type: ignore[misc]
    """(ground images, aerial images) -> match probabilities (B, Ng, Na), for export."""

    def __init__(self, features: FeaturesNetwork, matcher: Any) -> None:
        super().__init__()
        self.features = features
        self.matcher = matcher

    def forward(self, ground_images: Any, aerial_images: Any) -> Any:
        g = self.features(ground_images)
        a = self.features(aerial_images)
        return self.matcher(g.flatten(1, 2), a.flatten(1, 2))


def build_full_matcher(
    checkpoint: MatcherCheckpoint | MatcherCheckpointConfig,
    backbone_weights_path: str | Path | None,
    **random_backbone_kwargs: Any,
) -> FullMatcherNetwork:
    """Features network + dual softmax with the checkpoint's scalars."""
    features = FeaturesNetwork.from_checkpoint(
        checkpoint, backbone_weights_path, **random_backbone_kwargs
    )
    config = checkpoint.config if isinstance(checkpoint, MatcherCheckpoint) else checkpoint
    matcher = DualSoftmaxMatcher(config.matcher)
    if isinstance(checkpoint, MatcherCheckpoint):
        state = {k[8:]: v for k, v in checkpoint.tensors.items() if k.startswith("matcher.")}
        _load_module_state(matcher, state, "matcher checkpoint scalars")
    net: FullMatcherNetwork = FullMatcherNetwork(features, matcher).eval()
    return net


def torch_dinov2_random(backbone_id: str = "dinov2_vits14", **kwargs: Any) -> Any:
    """A randomly initialised ``Dinov2Model`` of the real architecture (tests, benchmarks)."""
    from cvgl_ros.models.backbone import dinov2_model

    return dinov2_model(dinov2_config(backbone_id, **kwargs)).eval()


def checkpoint_tensors(head: Any, matcher: Any) -> dict[str, np.ndarray]:
    """The tensors :func:`~cvgl_ros.models.checkpoint.save_matcher_checkpoint` expects, from a
    trained :class:`ProjectionHead` and :class:`DualSoftmaxMatcher` (float32 numpy copies)."""
    out = {
        f"head.{k}": v.detach().cpu().float().numpy().copy() for k, v in head.state_dict().items()
    }
    out.update(
        {
            f"matcher.{k}": v.detach().cpu().float().numpy().copy()
            for k, v in matcher.state_dict().items()
        }
    )
    return out


def random_checkpoint_tensors(
    config: MatcherCheckpointConfig, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random head + matcher tensors for ``config`` (tests, benchmarks, export smoke runs)."""
    torch.manual_seed(seed)
    return checkpoint_tensors(ProjectionHead(config.head), DualSoftmaxMatcher(config.matcher))

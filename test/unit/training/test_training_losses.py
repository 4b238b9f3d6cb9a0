"""Virtual Correspondence Error, infoNCE losses and correspondence sampling."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from cvgl_ros.training.losses import (  # noqa: E402
    ground_truth_similarity,
    info_nce_aerial_to_ground,
    info_nce_ground_to_aerial,
    virtual_correspondence_error,
    virtual_grid_m,
)
from cvgl_ros.training.sampling import gather_points, sample_correspondences  # noqa: E402

torch.set_num_threads(2)


def _sim(yaw: float, tx: float, ty: float, s: float = 1.0):
    return ground_truth_similarity(
        torch.tensor([yaw]), torch.tensor([[tx, ty]]), torch.tensor([s])
    )


class TestVirtualCorrespondenceError:
    def test_zero_at_truth(self) -> None:
        t = _sim(0.4, 3.0, -2.0)
        assert float(virtual_correspondence_error(t, t)[0]) == pytest.approx(0.0, abs=1e-5)

    def test_translation_error_is_the_distance(self) -> None:
        est, truth = _sim(0.4, 3.0, 1.0), _sim(0.4, 0.0, -3.0)
        assert float(virtual_correspondence_error(est, truth)[0]) == pytest.approx(5.0, rel=1e-5)

    def test_yaw_error_grows_with_extent(self) -> None:
        est, truth = _sim(0.1, 0.0, 0.0), _sim(0.0, 0.0, 0.0)
        small = float(virtual_correspondence_error(est, truth, extent_m=5.0)[0])
        large = float(virtual_correspondence_error(est, truth, extent_m=50.0)[0])
        assert large == pytest.approx(10.0 * small, rel=1e-4)
        assert small > 0.0

    def test_unknown_truth_scale_uses_estimate(self) -> None:
        est = _sim(0.0, 0.0, 0.0, s=2.0)
        truth = _sim(0.0, 0.0, 0.0, s=math.nan)
        assert float(virtual_correspondence_error(est, truth)[0]) == pytest.approx(0.0, abs=1e-5)

    def test_grid_validation(self) -> None:
        assert virtual_grid_m(10.0, 3).shape == (9, 2)
        with pytest.raises(ValueError, match="extent_m"):
            virtual_grid_m(0.0, 3)
        with pytest.raises(ValueError, match="points_per_side"):
            virtual_grid_m(1.0, 1)


def _line_setup():
    """4 ground cells on the body x axis; 4 aerial cells at the same metric spots."""
    ground = torch.tensor([[[2.0, 0.0], [4.0, 0.0], [6.0, 0.0], [8.0, 0.0]]])
    aerial = ground.clone()
    truth = _sim(0.0, 0.0, 0.0)
    valid = torch.ones(1, 4, dtype=torch.bool)
    return ground, aerial, truth, valid


class TestInfoNce:
    def test_ground_to_aerial_rewards_the_true_match(self) -> None:
        ground, aerial, truth, valid = _line_setup()
        good = torch.eye(4)[None] * 10.0
        bad = torch.roll(torch.eye(4), 1, dims=1)[None] * 10.0
        l_good = info_nce_ground_to_aerial(good, ground, valid, aerial, truth, 0.5)
        l_bad = info_nce_ground_to_aerial(bad, ground, valid, aerial, truth, 0.5)
        assert float(l_good) < 0.01 < 5.0 < float(l_bad)

    def test_no_positive_gives_zero_with_graph(self) -> None:
        ground, aerial, _, valid = _line_setup()
        far = _sim(0.0, 100.0, 0.0)
        logits = torch.zeros(1, 4, 4, requires_grad=True)
        loss = info_nce_ground_to_aerial(logits, ground, valid, aerial, far, 0.5)
        assert float(loss.detach()) == 0.0
        loss.backward()
        assert logits.grad is not None

    def test_aerial_to_ground_excludes_the_neighbourhood(self) -> None:
        ground, aerial, truth, valid = _line_setup()
        logits = torch.eye(4)[None] * 5.0
        base = info_nce_aerial_to_ground(logits, ground, valid, aerial, truth, 0.5, 2.5)
        # Raise the score of a ground cell 2 m from aerial cell 0: inside the 2.5 m
        # exclusion radius, so it is no negative and the loss must not change ...
        near = logits.clone()
        near[0, 1, 0] = 5.0
        same = info_nce_aerial_to_ground(near, ground, valid, aerial, truth, 0.5, 2.5)
        assert float(same) == pytest.approx(float(base), abs=1e-6)
        # ... while without exclusion it is a negative and the loss grows.
        grown = info_nce_aerial_to_ground(near, ground, valid, aerial, truth, 0.5, 0.5)
        assert float(grown) > float(base) + 0.1

    def test_invalid_ground_cells_are_ignored(self) -> None:
        ground, aerial, truth, valid = _line_setup()
        logits = torch.eye(4)[None] * 5.0
        logits[0, 3, 0] = 50.0  # an invalid cell scoring high must not matter
        valid[0, 3] = False
        loss = info_nce_aerial_to_ground(logits, ground, valid, aerial, truth, 0.5, 0.5)
        assert float(loss) < 0.1


class TestSampling:
    def test_topk_takes_the_most_probable(self) -> None:
        probs = torch.zeros(1, 3, 4)
        probs[0, 2, 1] = 0.9
        probs[0, 0, 3] = 0.5
        probs[0, 1, 0] = 0.1
        out = sample_correspondences(probs, 2)
        assert out.ground_index.tolist() == [[2, 0]]
        assert out.aerial_index.tolist() == [[1, 3]]
        assert out.weights[0].tolist() == pytest.approx([0.9, 0.5])

    def test_masks_are_respected(self) -> None:
        probs = torch.rand(2, 5, 6)
        g_valid = torch.ones(2, 5, dtype=torch.bool)
        g_valid[:, 0] = False
        a_valid = torch.ones(2, 6, dtype=torch.bool)
        a_valid[:, 5] = False
        for mode in ("topk", "multinomial"):
            out = sample_correspondences(
                probs, 10, mode, g_valid, a_valid, torch.Generator().manual_seed(0)
            )
            assert not bool((out.ground_index == 0).any())
            assert not bool((out.aerial_index == 5).any())

    def test_multinomial_is_reproducible_and_without_replacement(self) -> None:
        probs = torch.rand(1, 8, 8)
        a = sample_correspondences(
            probs, 20, "multinomial", generator=torch.Generator().manual_seed(3)
        )
        b = sample_correspondences(
            probs, 20, "multinomial", generator=torch.Generator().manual_seed(3)
        )
        assert torch.equal(a.ground_index, b.ground_index)
        flat = a.ground_index * 8 + a.aerial_index
        assert len(set(flat[0].tolist())) == 20

    def test_gradient_reaches_probabilities(self) -> None:
        probs = torch.rand(1, 4, 4, requires_grad=True)
        out = sample_correspondences(probs, 3)
        out.weights.sum().backward()
        assert probs.grad is not None and float(probs.grad.abs().sum()) == pytest.approx(3.0)

    def test_gather_points(self) -> None:
        pts = torch.arange(12.0).reshape(1, 6, 2)
        got = gather_points(pts, torch.tensor([[5, 0]]))
        assert got.tolist() == [[[10.0, 11.0], [0.0, 1.0]]]

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="probabilities"):
            sample_correspondences(torch.rand(4, 4), 2)
        with pytest.raises(ValueError, match="num_samples"):
            sample_correspondences(torch.rand(1, 4, 4), 0)
        with pytest.raises(ValueError, match="mode"):
            sample_correspondences(torch.rand(1, 4, 4), 2, "best")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ground_valid"):
            sample_correspondences(
                torch.rand(1, 4, 4), 2, ground_valid=torch.ones(1, 3, dtype=torch.bool)
            )

"""The threshold rules on good images alone: the area rule per image, and the bound that
keeps new good images from being flagged."""

from __future__ import annotations

import numpy as np
import pytest

from aeinspect.maps.thresholds import prediction_bound, quiet_thresholds, threshold_by_area


def good_maps(count: int, seed: int) -> list[np.ndarray]:
    """Residual maps of defect-free images: smooth noise of an image-wise varying level."""
    rng = np.random.default_rng(seed)
    return [(rng.random((40, 50)) * rng.lognormal(-2, 0.3)).astype(np.float32)
            for _ in range(count)]  # fmt: skip


def test_the_area_rule_is_the_largest_of_each_image_s_own_threshold() -> None:
    maps = good_maps(6, seed=0)
    quiet = quiet_thresholds(maps, min_area=5, opening=2)
    assert threshold_by_area(maps, min_area=5, opening=2) == quiet.max()
    for own, residual in zip(quiet, maps, strict=True):
        assert threshold_by_area([residual], min_area=5, opening=2) == own


@pytest.mark.parametrize(("count", "image_fpr"), [(4, 0.05), (20, 0.02), (8, 0.01)])
def test_the_bound_flags_about_image_fpr_of_new_good_images(count: int, image_fpr: float) -> None:
    """New images' own thresholds, drawn as the held-out ones are, exceed the bound in about
    a fraction image_fpr of 4,000 seeded trials (within five binomial standard deviations);
    they exceed the area rule's t, the largest held-out one, in about 1/(n + 1)."""
    rng = np.random.default_rng(1)
    trials = 4000
    held_out = rng.lognormal(-2.0, 0.4, (trials, count))
    new = rng.lognormal(-2.0, 0.4, trials)
    bounds = np.array([prediction_bound(row, image_fpr=image_fpr) for row in held_out])
    flagged = np.mean(new > bounds)
    spread = (image_fpr * (1 - image_fpr) / trials) ** 0.5
    assert abs(flagged - image_fpr) < 5 * spread + 0.1 * image_fpr, flagged
    assert np.mean(new > held_out.max(axis=1)) > 0.8 / (count + 1)  # the area rule's rate


def test_the_bound_is_never_below_the_largest_held_out_threshold() -> None:
    quiet = np.array([0.10, 0.11, 0.12, 0.50])  # one far out: the normal fit is too tight
    assert prediction_bound(quiet, image_fpr=0.45) == 0.50
    assert prediction_bound(quiet, image_fpr=0.01) > 0.50


def test_the_bound_needs_three_images_and_a_rate_below_a_half() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        prediction_bound(np.array([0.1, 0.2]), image_fpr=0.05)
    with pytest.raises(ValueError, match="image_fpr"):
        prediction_bound(np.array([0.1, 0.2, 0.3]), image_fpr=0.5)

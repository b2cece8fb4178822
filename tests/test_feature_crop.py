"""Feature Crop (STiCA): crop sizes from the map, positions uniform over every valid offset, crops cut exactly."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from videozoo.methods.feature_crop import (
    SPATIAL_FRACTIONS,
    TEMPORAL_FRACTIONS,
    Crop,
    apply_crops,
    crop_length,
    sample_crops,
    sample_offsets,
)


@pytest.mark.parametrize(("t", "large", "small"), [(4, 3, 2), (8, 6, 4)])
def test_temporal_crop_sizes_are_the_papers(t: int, large: int, small: int) -> None:
    # R(2+1)D-18 at 112²: 30 frames give T=4, 60 frames T=8 (REFERENCE.md: 3 / 2 and 6 / 4)
    assert crop_length(t, TEMPORAL_FRACTIONS["large"]) == large
    assert crop_length(t, TEMPORAL_FRACTIONS["small"]) == small
    crops = sample_crops((t, 7, 7), num=3, fraction=TEMPORAL_FRACTIONS["large"], temporal=True)
    assert all(c.size == (large, 7, 7) for c in crops)


def test_spatial_crop_sizes_are_the_papers_and_scale_with_the_map() -> None:
    assert crop_length(7, SPATIAL_FRACTIONS["large"]) == 6 and crop_length(7, SPATIAL_FRACTIONS["small"]) == 4
    assert all(c.size == (4, 6, 6) for c in sample_crops((4, 7, 7), num=3, fraction=6 / 7, temporal=False))
    assert all(c.size == (8, 4, 4) for c in sample_crops((8, 7, 7), num=3, fraction=4 / 7, temporal=False))
    assert [crop_length(n, 6 / 7) for n in (1, 2, 4, 14)] == [1, 2, 3, 12]  # at least 1, halves up
    assert [crop_length(n, 4 / 7) for n in (1, 2, 4, 14)] == [1, 1, 2, 8]
    with pytest.raises(ValueError):
        crop_length(0, 0.5)
    with pytest.raises(ValueError):
        sample_offsets(3, 4, 1)


@pytest.mark.parametrize(
    ("shape", "fraction", "temporal", "axis", "window"),
    [
        ((4, 7, 7), 6 / 7, False, 1, 6),  # large spatial: offsets {0, 1} (the official code: always 0)
        ((4, 7, 7), 4 / 7, False, 2, 4),  # small spatial: {0 … 3} (officially never 3)
        ((4, 7, 7), 3 / 4, True, 0, 3),  # large temporal, T=4: {0, 1} (officially always 0)
        ((4, 7, 7), 1 / 2, True, 0, 2),  # small temporal, T=4: {0, 1, 2}
        ((8, 7, 7), 3 / 4, True, 0, 6),  # large temporal, T=8: {0, 1, 2}
        ((8, 7, 7), 1 / 2, True, 0, 4),  # small temporal, T=8: {0 … 4}
    ],
)
def test_positions_are_uniform_over_every_valid_offset(shape, fraction, temporal, axis, window) -> None:
    n = 6000
    crops = sample_crops(shape, num=n, fraction=fraction, temporal=temporal, generator=torch.Generator().manual_seed(1))
    starts = Counter(c[axis][0] for c in crops)
    valid = range(shape[axis] - window + 1)
    assert set(starts) == set(valid)  # every valid offset occurs, the last one included, and nothing else
    for offset in valid:  # each within 12% of n / #offsets (binomial sd is ~2-4% here)
        assert abs(starts[offset] / (n / len(valid)) - 1) < 0.12, (offset, starts)
    for c in crops:  # the other axes are whole; the box lies inside the map
        assert all(start >= 0 and start + size <= full for (start, size), full in zip(c, shape))
        assert all(c[a] == (0, shape[a]) for a in range(3) if a != axis and (temporal or a == 0))


def test_spatial_offsets_are_drawn_independently_per_axis() -> None:
    crops = sample_crops(
        (4, 7, 7), num=4000, fraction=4 / 7, temporal=False, generator=torch.Generator().manual_seed(2)
    )
    pairs = Counter((c.h[0], c.w[0]) for c in crops)
    assert len(pairs) == 16 and min(pairs.values()) > 4000 / 16 * 0.7  # all 4×4 combinations, roughly equally


def test_the_generator_alone_decides_the_positions() -> None:
    def draw(seed: int) -> list[Crop]:
        return sample_crops(
            (8, 7, 7), num=5, fraction=4 / 7, temporal=False, generator=torch.Generator().manual_seed(seed)
        )

    torch.manual_seed(0)
    first = draw(3)
    torch.manual_seed(1)  # the global RNG plays no part
    assert draw(3) == first and draw(4) != first


def test_apply_crops_cuts_the_boxes_crop_major() -> None:
    features = torch.randn(2, 5, 4, 7, 7)  # (B, D, T, H, W)
    crops = [Crop((0, 4), (1, 4), (3, 4)), Crop((0, 4), (3, 4), (0, 4))]
    out = apply_crops(features, crops)
    assert out.shape == (4, 5, 4, 4, 4)
    torch.testing.assert_close(out[0:2], features[:, :, :, 1:5, 3:7])  # rows n·B + b: crop 0, then crop 1
    torch.testing.assert_close(out[2:4], features[:, :, :, 3:7, 0:4])
    temporal = apply_crops(features, [Crop((2, 2), (0, 7), (0, 7))])
    torch.testing.assert_close(temporal, features[:, :, 2:4])
    with pytest.raises(ValueError, match="one size"):
        apply_crops(features, [crops[0], Crop((0, 4), (0, 6), (0, 6))])
    with pytest.raises(ValueError, match=r"\(B, D, T, H, W\)"):
        apply_crops(torch.randn(2, 5, 7), crops)


def test_gather_crops_equals_slicing() -> None:
    from videozoo.methods.feature_crop import crop_size, crop_starts, gather_crops

    features = torch.randn(3, 5, 4, 7, 7, requires_grad=True)
    generator = torch.Generator().manual_seed(0)
    for temporal, fraction in ((False, 4 / 7), (True, 3 / 4)):
        crops = sample_crops((4, 7, 7), num=3, fraction=fraction, temporal=temporal, generator=generator)
        size = crop_size((4, 7, 7), fraction=fraction, temporal=temporal)
        gathered = gather_crops(features, crop_starts(crops), size)
        assert torch.equal(gathered, apply_crops(features, crops))
        grads = [torch.autograd.grad(x.square().sum(), features)[0] for x in (gathered, apply_crops(features, crops))]
        torch.testing.assert_close(grads[0], grads[1])

import pytest
import torch

from fastsynth.sampling import binary_dilation, binary_opening, decode_mask, ellipse_kernel, opening_size
from fastsynth.sampling.samplers import SAMPLER_NAMES, grid_timesteps, make_scheduler, sample


def test_opening_size_scales_with_resolution():
    assert opening_size(256) == 16 and opening_size(64) == 4 and opening_size(128) == 8
    assert opening_size(64, 0) == 0


def test_opening_removes_specks_and_keeps_blobs():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 8:20, 8:20] = 1  # a blob larger than the kernel
    m[0, 0, 28, 3] = 1  # a speck
    m[0, 0, 2:4, 25:27] = 1  # 2x2: smaller than a 4x4 ellipse
    out = binary_opening(m, 4)
    assert out[0, 0, 28, 3] == 0 and out[0, 0, 2:4, 25:27].sum() == 0
    assert torch.equal(out[0, 0, 9:19, 9:19], torch.ones(10, 10))
    assert out[0, 0, 8, 8] == 0  # a disc cannot fit into a square's corner: opening rounds it
    assert out.sum() >= 0.95 * 144 and out.sum() <= 144


def test_opening_fixes_the_kernel_shape_itself():
    for k in (3, 4, 5, 16):
        kern = ellipse_kernel(k)
        m = torch.zeros(1, 1, 40, 40)
        m[0, 0, 10:10 + k, 12:12 + k] = kern
        assert torch.equal(binary_opening(m, k), m), k


def test_dilation_grows_by_radius():
    m = torch.zeros(1, 1, 21, 21)
    m[0, 0, 10, 10] = 1
    d = binary_dilation(m, 3)
    assert d[0, 0, 10, 13] == 1 and d[0, 0, 10, 14] == 0 and d[0, 0, 13, 10] == 1


def test_decode_mask_threshold_and_dtype():
    ch = torch.tensor([[[[-0.5, 0.2], [0.0, 1.0]]]])
    out = decode_mask(ch, 0.0, opening=0)
    assert out.dtype == torch.uint8 and out.tolist() == [[[0, 255], [0, 255]]]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_every_sampler_denoises_a_point_mass(prediction_type):
    """With the exact model output for a point mass at x0, every sampler must land on x0."""
    x0 = torch.full((2, 4, 4, 4), 0.3)
    for name in SAMPLER_NAMES:
        grid = grid_timesteps(1000, 8) if name == "distilled" else None
        sch = make_scheduler(name, prediction_type=prediction_type, grid=grid)
        ac = sch.alphas_cumprod

        def model_fn(x_t, t, cond):
            a = ac[t].view(-1, 1, 1, 1).float()
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
            return eps if prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0

        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        steps = 50 if name == "ddpm" else 8
        out = sample(model_fn, sch, torch.randn(2, 4, 4, 4), torch.zeros(2, 8, 4, 4), steps, generators=gens)
        assert (out - x0).abs().max() < 0.05, name


def test_keep_largest_regions_keeps_the_biggest_8_connected_regions_and_labels():
    from fastsynth.sampling.masks import connected_regions, keep_largest_regions

    m = torch.zeros(2, 12, 12, dtype=torch.uint8)
    m[0, 1:4, 1:4] = 255  # 9 px
    m[0, 4, 4] = 255  # diagonal neighbour: the same 8-connected region (10 px)
    m[0, 7:11, 7:11] = 255  # 16 px
    m[0, 0, 11] = 255  # 1 px
    m[1, 2:6, 2:6] = 1  # a label map: a 3-class region (blood pool inside myocardium) ...
    m[1, 3:5, 3:5] = 2
    m[1, 9, 9] = 2  # ... and a stray pixel
    ids = connected_regions(m > 0)
    assert len(torch.unique(ids[0])) == 4  # background + 3 regions
    assert ids[0, 1, 1] == ids[0, 4, 4]
    one = keep_largest_regions(m, 1)
    assert one[0].bool().sum() == 16 and one[0, 8, 8] == 255 and one[0, 1, 1] == 0
    assert torch.equal(one[1, :8, :8], m[1, :8, :8]) and one[1, 9, 9] == 0  # classes kept, stray pixel dropped
    two = keep_largest_regions(m, 2)
    assert two[0].bool().sum() == 26 and two[0, 0, 11] == 0
    assert torch.equal(keep_largest_regions(m, 5), m)


def test_max_components_needs_the_redraw(tmp_path):
    from fastsynth.config import GenerateConfig
    from fastsynth.errors import FastsynthError
    from fastsynth.pipeline import generate

    with pytest.raises(FastsynthError, match="--max-components"):
        generate(GenerateConfig(n=2, redraw=False, max_components=1), tmp_path / "out")
    assert not (tmp_path / "out").exists()

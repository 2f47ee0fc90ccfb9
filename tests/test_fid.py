"""FID that is either right or refused (issue 9, point 2): the feature network's output size and input
convention are checked, a degenerate matrix square root is refused, small-n FID comes with a warning."""

import numpy as np
import pytest
import torch

from fastsynth.errors import FastsynthError
from fastsynth.metrics import fid


class Logits(torch.nn.Module):
    """A stand-in for an Inception whose plain forward gives 1008-d logits."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


class StyleGAN3Like(torch.nn.Module):
    """Like StyleGAN3's inception-2015-12-05.pt: [0, 255] input; logits unless return_features=True."""

    def __init__(self):
        super().__init__()
        self.feat = torch.nn.Linear(3, 2048)
        self.head = torch.nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        # the real network errs on inputs outside [0, 255]; this one marks them as NaN
        f = torch.relu(self.feat(img.mean(dim=(2, 3)) / 255.0))
        f = torch.where(img.amin() < 0, torch.full_like(f, float("nan")), f)
        return f if return_features else self.head(f)


def _save(module, path):
    torch.jit.script(module).save(str(path))
    return path


def test_logits_network_is_refused(tmp_path):
    with pytest.raises(FastsynthError, match="gives 1008-d outputs, not the 2048-d pool3 features"):
        fid.InceptionFeatures(str(_save(Logits(), tmp_path / "logits.pt")))


def test_stylegan3_convention_is_used(tmp_path):
    net = StyleGAN3Like()
    ext = fid.InceptionFeatures(str(_save(net, tmp_path / "sg3.pt")), resize=False)
    assert ext.convention == "stylegan3" and "stylegan3" in ext.key
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    f = ext(img)
    want = net(torch.from_numpy(img.transpose(0, 3, 1, 2).astype(np.float32)), return_features=True)
    assert f.shape == (2, 2048) and np.allclose(f, want.double().detach().numpy(), atol=1e-5)


def test_imaginary_square_root_is_refused():
    mu = np.zeros(2)
    with pytest.raises(FastsynthError, match="imaginary part"):
        fid.frechet_distance(mu, np.eye(2), mu, np.diag([1.0, -4.0]))  # not a covariance: sqrt(-4) = 2i
    s = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert abs(fid.frechet_distance(mu, s, mu, s)) < 1e-6  # a PSD product: fine


def test_fid_with_few_samples_warns_and_points_to_kid():
    rng = np.random.default_rng(1)
    r = fid.fid_kid(rng.normal(size=(10, 16)), rng.normal(size=(12, 16)), kid_subsets=3)
    assert len(r["warnings"]) == 1 and "fewer than the 16 feature dimensions" in r["warnings"][0]
    assert "KID" in r["warnings"][0]
    assert fid.fid_kid(rng.normal(size=(40, 4)), rng.normal(size=(40, 4)), kid_subsets=3)["warnings"] == []


def test_features_match_clean_fid_where_installed():
    """Against the real offline weights and clean-fid's own code, when both are here (skipped otherwise)."""
    cleanfid = pytest.importorskip("cleanfid")
    try:
        ext = fid.InceptionFeatures(batch_size=2)
    except FastsynthError:
        pytest.skip("no Inception weights installed")
    from cleanfid.resize import make_resizer

    imgs = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    for im in imgs:
        assert np.allclose(resize(im).transpose(2, 0, 1), fid.clean_resize(im), atol=1e-4)
    from cleanfid.features import build_feature_extractor

    try:
        ref = build_feature_extractor("clean", torch.device("cpu"))
    except Exception:
        pytest.skip(f"clean-fid {getattr(cleanfid, '__version__', '?')} has no offline weights here")
    x = torch.from_numpy(np.stack([resize(im) for im in imgs]).transpose(0, 3, 1, 2))
    want = ref(x).double().numpy()
    assert np.allclose(ext(imgs), want, rtol=1e-3, atol=1e-3)

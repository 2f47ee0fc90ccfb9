"""Label agreement of generated pairs with a segmenter trained on real data, run on generation's backends: what
``fastsynth filter`` and ``generate --keep-agreeing`` keep or drop."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FastsynthError


class AgreementScorer:
    """Label agreement of pairs with a segmenter trained on real data: ``scorer(images, masks)`` -> Dice per pair
    (float32), for uint8 images [N, H, W, 3] and masks [N, H, W] in {0, 255}. Pairs of another size are resized to
    the segmenter's resolution as ``evaluate --seg-resolution`` resizes them; the segmenter runs on the same backends
    as generation (``make_segmenter_fn``). Used by ``fastsynth filter`` and by ``generate --keep-agreeing``."""

    def __init__(self, segmenter: str | os.PathLike, device="cpu", backend: str = "auto", batch_size: int = 64):
        from . import make_segmenter_fn, resolve_backend
        from ..utils import file_sha256, resolve_device
        from ..models.segmenter import WEIGHTS_NAME, load_segmenter

        self.device = resolve_device(device) if isinstance(device, str) else device
        model, cfg, _ = load_segmenter(segmenter, self.device)
        if cfg.class_names:
            raise FastsynthError(f"{segmenter}: a segmenter of label maps ({', '.join(cfg.class_names)}); the "
                                 "agreement filter scores binary masks for now")
        self.resolution, self.threshold, self.batch_size = int(cfg.resolution), float(cfg.threshold), batch_size
        self.sha256 = file_sha256(Path(segmenter) / WEIGHTS_NAME)
        self.config, self.path = cfg, Path(segmenter)
        self.latent = cfg.input == "latent"
        if self.latent:  # a small network on the latent grid (about 1 ms a candidate): run eagerly, in fp32
            self.backend, self.fn = "eager", model.float()
            return
        self.backend = resolve_backend(backend, self.device, kind="segmenter")
        self.fn = make_segmenter_fn(model, cfg.resolution, self.backend, self.device, batch_size=batch_size,
                                    model_sha=self.sha256)

    def check_space(self, model_config) -> None:
        """A latent filter reads the latents of the autoencoder it was trained on, and nothing else."""
        c = self.config
        if not self.latent:
            return
        if c.autoencoder != model_config.autoencoder or c.autoencoder_sha256 != model_config.autoencoder_sha256:
            raise FastsynthError(
                f"{self.path}: a filter of {c.autoencoder} latents ({str(c.autoencoder_sha256)[:12]}); this model's "
                f"pairs are {model_config.autoencoder or 'pixels'}"
                + (f" ({str(model_config.autoencoder_sha256)[:12]})" if model_config.autoencoder else ""))

    def score_latents(self, z, masks: np.ndarray) -> np.ndarray:
        """Dice per pair of a latent filter: latents [N, 32, h, w] at the autoencoder's own scale, masks [N, H, W]
        in {0, 255} at the model's resolution (area-resized to the filter's resolution, as it was trained)."""
        from ..models.segmenter import dice_iou, mask_at, predict_latent

        pred = predict_latent(self.fn, z.to(self.device), self.resolution, self.threshold, self.batch_size)
        return dice_iou(pred, mask_at(masks, self.resolution)[:, 0].numpy())[0].astype(np.float32)

    def _pairs(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        if self.latent:
            raise FastsynthError(f"{self.path}: a latent filter scores latents (score_latents), not images")
        from ..data.pairs import resize_pairs

        pairs = np.concatenate([images.transpose(0, 3, 1, 2), masks[:, None]], 1)
        if pairs.shape[-1] != self.resolution:  # judged where the segmenter was trained, as evaluate does
            pairs = resize_pairs(pairs, self.resolution)
        return pairs

    def _predict(self, pairs: np.ndarray) -> np.ndarray:
        from ..models.segmenter import predict

        return predict(self.fn, pairs[:, :3], self.threshold, self.batch_size, self.device)

    def predict_masks(self, images: np.ndarray) -> np.ndarray:
        """The image segmenter's own masks [N, r, r] (bool) at its resolution ``r``, for uint8 images [N, H, W, 3]
        resized as ``__call__`` resizes them (what ``train-filter --distill`` teaches a latent filter)."""
        return self._predict(self._pairs(images, np.zeros(images.shape[:3], np.uint8))).astype(bool)

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        from ..models.segmenter import dice_iou

        pairs = self._pairs(images, masks)
        return dice_iou(self._predict(pairs), pairs[:, 3] >= 128)[0].astype(np.float32)

"""Training the ``ae`` mask representation: a small mask autoencoder (``fastsynth.models.latent.MaskCodec``) fitted
to a run's training labels before the diffusion trains, then frozen (its grid is what the denoiser learns).

Loss: binary cross-entropy + soft Dice of the decoded logits against the labels, with Gaussian noise on the grid
(std ``grid_noise``) so the decoder tolerates the small errors of a sampled grid. Deterministic for a seed.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def train_mask_codec(labels: torch.Tensor, modality, steps: int = 1500, batch_size: int = 16, lr: float = 2e-3,
                     seed: int = 0, grid_noise: float = 0.1, progress: bool = True, crop: int = 128):
    """``labels``: uint8 [N, V, H, W] (the latent cache's labels, every flip). Returns (MaskCodec, info).
    Trained on random ``crop`` x ``crop`` windows on the latent grid's lattice (a convolutional codec: the same
    function on the whole image), a quarter of the cost of whole 256^2 masks."""
    from tqdm.auto import tqdm

    from ..data.codec import labels_to_channels
    from ..models.latent import MaskCodec

    n, v = labels.shape[:2]
    flat = labels.reshape(n * v, *labels.shape[2:])
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = MaskCodec(modality.label_channels)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(2, steps),
                                                pct_start=max(0.05, 2.5 / max(3, steps)))
    t0 = time.perf_counter()
    last = None
    for _ in tqdm(range(steps), desc="training the mask autoencoder", unit="it", disable=not progress):
        idx = torch.randint(0, len(flat), (batch_size,), generator=g)
        x = labels_to_channels(flat[idx], modality)
        h = x.shape[-1]
        if crop < h:
            oy, ox = (int(v) * 8 for v in torch.randint(0, (h - crop) // 8 + 1, (2,), generator=g))
            x = x[..., oy:oy + crop, ox:ox + crop]
        grid = codec.encode(x)
        grid = grid + grid_noise * torch.randn(grid.shape, generator=g)
        logits = codec.decode(grid)
        y = (x > 0).float()
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * y).sum((2, 3)) + 1) / (prob.sum((2, 3)) + y.sum((2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = float(loss.detach())
    codec.eval().requires_grad_(False)
    return codec, {"steps": steps, "batch_size": batch_size, "lr": lr, "grid_noise": grid_noise, "crop": crop,
                   "final_loss": last,
                   "seconds": round(time.perf_counter() - t0, 1)}


def round_trip_iou(labels: torch.Tensor, modality, to_grid, to_logits, threshold: float = 0.0) -> torch.Tensor:
    """IoU of each label map's foreground after ``to_logits(to_grid(channels))``, thresholded (argmax for label
    maps) as generated masks are; an empty map that comes back empty scores 1. ``labels``: uint8 [N, H, W]."""
    from ..data.codec import labels_to_channels
    from ..sampling.masks import decode_labels

    out = []
    for i in range(0, len(labels), 64):
        lab = labels[i:i + 64]
        rec = decode_labels(to_logits(to_grid(labels_to_channels(lab, modality))), threshold, 0)
        a, b = (lab > 0), (rec > 0)
        if not modality.binary:  # the same class
            a, b = lab, rec
            inter = ((a == b) & (a > 0)).flatten(1).sum(1).float()
            union = ((a > 0) | (b > 0)).flatten(1).sum(1).float()
        else:
            inter = (a & b).flatten(1).sum(1).float()
            union = (a | b).flatten(1).sum(1).float()
        out.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)))
    return torch.cat(out)

"""One batch of ``generate``'s rows: per-row seeds, the conditioning of the three modes, sampling, mask decoding
and the redraw pass. ``pipeline.generate`` cuts a dataset into such batches; the int8 accuracy gate
(``fastsynth.runtime.gates``) runs the same function, so it checks exactly what generation does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..conditioning import cond_from_masks, cond_inpaint, cond_pairs, inpaint_region, random_boxes
from ..config import GenerateConfig, resolve_guidance
from ..data.codec import labels_to_channels, tensor_to_raw
from ..data.modality import Modality
from ..errors import FastsynthError
from .guidance import autoguided_model_fn, guided_model_fn
from .masks import decode_labels, keep_largest_regions
from .samplers import sample, to_x0_eps

REDRAW_SEED_XOR = 0x2545F4914F6CDD1D  # the redraw pass's noise: its own stream of the row's seed


def _hash63(*entropy: int) -> int:
    ss = np.random.SeedSequence([int(v) for v in entropy])
    return int(ss.generate_state(1, np.uint64)[0] & np.uint64((1 << 63) - 1))


def row_seed(seed: int, index: int) -> int:
    """The seed of row ``index``: a 63-bit hash of (seed, index), stored in the dataset's ``seed`` column."""
    return _hash63(seed, index)


SPARE_TAG = 0x5BD1E995  # the spare candidates of a filtered shard: a seed stream of their own


def spare_seed(seed: int, shard: int, j: int) -> int:
    """The seed of spare candidate ``j`` of shard ``shard`` (``generate --keep-agreeing`` draws spares when some of
    the shard's own rows are rejected): a 63-bit hash of (seed, tag, shard, j), apart from every ``row_seed``."""
    return _hash63(seed, SPARE_TAG, shard, j)


@dataclass
class Conditioning:
    """Per-row conditioning source: row i uses item i % len(stems)."""

    mode: str
    stems: list
    data: torch.Tensor | None  # [M, D, H, W] float x0 (inpaint) or [M, K-1, H, W] label channels (from-masks)
    fingerprint: str
    modality: Modality = Modality()
    # the given values in their own depth, pasted back exactly: [M, C + 1, H, W] (inpaint) or labels [M, H, W]
    raw: np.ndarray | None = None
    # the model's space (fastsynth.models.latent); None: pixels. A latent model's ``data`` is in its grid (the
    # encoded image + the mask grid, or the mask grid), and ``labels_full`` holds the label channels at full
    # resolution [M, K-1, H, W] that the inpainting regions are drawn from
    space: object = None
    labels_full: torch.Tensor | None = None

    def batch(self, indices: np.ndarray, seeds: np.ndarray, resolution: int, dilate_px: int):
        """(known, indicator, sources, region): the conditioning of these rows in the model's grid, and for
        inpainting the full-resolution region [n, 1, H, W] that is regenerated (None otherwise)."""
        n = len(indices)
        space = self.space
        grid = resolution if space is None else space.grid
        channels = self.modality.data_channels if space is None else space.state_channels
        if self.mode == "pairs":
            known, indicator = cond_pairs(n, grid, channels)
            return known, indicator, [""] * n, None
        j = torch.as_tensor(indices % len(self.stems))
        src = [self.stems[int(k)] for k in j]
        if self.mode == "from-masks":
            known, indicator = cond_from_masks(self.data[j], channels=channels)
            return known, indicator, src, None
        x0 = self.data[j]
        labels = x0[:, self.modality.channels:] if self.labels_full is None else self.labels_full[j]
        region = inpaint_region(labels, dilate_px)
        for r in torch.nonzero(region.flatten(1).amax(1) == 0).flatten().tolist():
            # an empty real mask would leave nothing to generate (a verbatim copy of a real image):
            # regenerate a box drawn from the row's own seed instead, as in training
            g = torch.Generator().manual_seed(int(seeds[r]) ^ 0x5DEECE66D)
            region[r] = random_boxes(1, resolution, g)[0]
        known, indicator = cond_inpaint(x0, region if space is None else space.region_to_grid(region))
        return known, indicator, src, region


def conditioning_from_arrays(mode: str, stems: list, arr: np.ndarray, modality: Modality, fingerprint: str = "",
                             space=None) -> Conditioning:
    """The conditioning of from-masks (``arr``: labels [M, H, W]) or inpaint (``arr``: pairs [M, C + 1, H, W], images
    in their depth then the label), in the model's space: a latent model's masks go into its grid and the
    inpainted images through its encoder (once), with the full-resolution labels kept for the regions."""
    from ..data.codec import pairs_to_x0

    labels_full = None
    if mode == "from-masks":
        data = labels_to_channels(arr, modality)
        if space is not None:
            data = space.labels_to_grid(data)
    else:
        data = pairs_to_x0(arr.astype(np.int32) if arr.dtype == np.uint16 else arr, modality)
        if space is not None:
            c = modality.channels
            labels_full = data[:, c:]
            data = torch.cat([space.encode_images(data[:, :c]), space.labels_to_grid(labels_full)], dim=1)
    return Conditioning(mode, list(stems), data, fingerprint, modality, arr, space=space, labels_full=labels_full)


@torch.inference_mode()
def sample_pairs(model_fn, scheduler, cfg: GenerateConfig, cond_src: Conditioning, indices, seeds, res: int,
                  dilate_px: int, opening: int, device: torch.device, weak_fn=None, select=None):
    """``weak_fn``: the weaker model of ``cfg.autoguide``, which guides the first pass of pairs.

    ``select``: pairs of a latent model only; ``select(z, masks) -> kept rows`` sees each candidate's latent (the
    autoencoder's own scale) and cleaned mask before anything is decoded, and only the rows it keeps are redrawn
    and decoded. Returns (images, masks, sources) of the kept rows then, in their order; else of every row."""
    cfg = resolve_guidance(cfg)
    known, indicator, src, region = cond_src.batch(indices, seeds, res, dilate_px)
    guided = guided_fn(model_fn, cfg, scheduler)
    m = cond_src.modality
    space = cond_src.space
    c = m.channels if space is None else space.state_image_channels  # the state's channels before the labels
    grid = res if space is None else space.grid
    late = None
    if cfg.mode == "pairs":
        fn = autoguided_model_fn(model_fn, weak_fn, cfg.autoguide_scale) if weak_fn is not None else model_fn
        if cfg.condition_at:
            late = fn = LateCondition(fn, guided, scheduler,
                                      cfg.condition_at, m, cfg.mask_threshold, opening, cfg.max_components, space)
    else:
        fn = guided
    x0 = _sample_rows(fn, scheduler, cfg, seeds, known, indicator, grid, device)
    if late is not None and late.mask_u8 is not None:
        mask_u8 = late.mask_u8  # the mask the image's last steps were conditioned on (it is kept, as in the redraw)
    else:
        mask_u8 = finished_mask(_full_logits(x0[:, c:], space), cfg.mask_threshold, opening,
                                cfg.max_components if cfg.mode == "pairs" else 0)
    rgb = x0[:, :c]
    if select is not None:
        if space is None or not getattr(space, "latent", False) or cfg.mode != "pairs":
            raise ValueError("select: for new pairs of a latent model")
        kept = torch.as_tensor(np.asarray(select(space.to_autoencoder_scale(rgb), mask_u8.numpy()),
                                          dtype=np.int64))
        rgb, mask_u8 = rgb[kept.to(rgb.device)], mask_u8[kept]
        seeds, src = [seeds[i] for i in kept.tolist()], [src[i] for i in kept.tolist()]
        if not len(kept):  # none kept: nothing to redraw or decode
            return tensor_to_raw(torch.zeros(0, m.channels, res, res), m), mask_u8.numpy(), []
    if cfg.redraw:
        # second pass: a new image for each generated (cleaned) mask, mask-conditioned and guided; the mask is kept
        known, indicator = cond_from_masks(_label_grid(mask_u8, m, space), channels=x0.shape[1])
        redraw_seeds = [int(s) ^ REDRAW_SEED_XOR for s in seeds]
        rgb = _sample_rows(guided, scheduler, cfg,
                           redraw_seeds, known, indicator, grid, device)[:, :c]
    if space is not None:  # a latent model: the image decoded from its latent
        rgb = space.decode_images(rgb)
    images = tensor_to_raw(rgb, m)
    masks_np = mask_u8.numpy()
    if cfg.mode != "pairs":
        # known values are given, not generated: paste them back exactly, in their own depth
        raw = cond_src.raw[np.asarray(indices) % len(cond_src.stems)]
        if cfg.mode == "from-masks":
            masks_np = raw.copy()
        else:
            keep = (region[:, 0] == 0).numpy()
            ci = m.channels
            src_img = raw[:, :ci].transpose(0, 2, 3, 1) if ci == 3 else raw[:, 0]
            images = np.where(keep[..., None] if ci == 3 else keep, src_img, images).astype(images.dtype)
            masks_np = np.where(keep, raw[:, ci], masks_np).astype(np.uint8)
    return images, masks_np, src


def guided_fn(model_fn, cfg: GenerateConfig, scheduler):
    """``model_fn`` under ``cfg``'s classifier-free guidance (scale and noise-level interval; () = every step), as the
    mask-conditioned passes run it."""
    interval = cfg.guidance_interval or None
    return guided_model_fn(model_fn, cfg.guidance, interval, scheduler.alphas_cumprod if interval else None)


class LateCondition:
    """The model function of one-pass pairs with a late, mask-conditioned finish (``--condition-at SIGMA``).

    The steps whose noise level sigma_t = sqrt((1 - a_t) / a_t) is above SIGMA draw image and mask together
    (``joint_fn``, unconditional). At the first step at or below SIGMA the mask is fixed: decoded (threshold,
    opening, ``max_components``) from the joint x0 prediction of the step before, as the redraw decodes the
    finished mask; every later step is conditioned on it (``cond_fn``: the mask-conditioned, guided network).
    The image is finished for the mask it is labelled with, at no extra network evaluation (guidance aside),
    where the redraw draws a second image from pure noise (as many evaluations again). Stateful: one per batch.
    """

    def __init__(self, joint_fn, cond_fn, scheduler, sigma: float, modality: Modality, threshold: float,
                 opening: int, max_components: int = 0, space=None):
        from .guidance import sigma_of_t

        self.joint_fn, self.cond_fn, self.sigma, self.modality = joint_fn, cond_fn, float(sigma), modality
        self.space = space
        self.threshold, self.opening, self.max_components = threshold, opening, max_components
        self.ac = scheduler.alphas_cumprod.float()
        self.sig = sigma_of_t(scheduler.alphas_cumprod)
        self.prediction_type = scheduler.config["prediction_type"]
        self.last = None  # (x_t, t index, output) of the latest joint step: its x0 is needed only at the switch
        self.mask_u8 = None
        self.cond = None

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ti = int(t.reshape(-1)[0].round().clamp(0, len(self.sig) - 1))
        if self.cond is None and float(self.sig[ti]) > self.sigma:
            out = self.joint_fn(x_t, t, cond)
            self.last = (x_t, ti, out)
            return out
        if self.cond is None:
            if self.last is None:
                raise FastsynthError(f"--condition-at {self.sigma:g}: the first step's noise level is already at "
                                     "or below it, so there is no mask to condition on yet; choose a lower sigma")
            x_prev, tp, out = self.last
            c = self.modality.channels if self.space is None else self.space.state_image_channels
            x0 = to_x0_eps(out[:, c:].float(), x_prev[:, c:].float(), self.ac.to(x_prev.device)[tp],
                           self.prediction_type)[0]
            self.mask_u8 = finished_mask(_full_logits(x0.cpu(), self.space), self.threshold, self.opening,
                                         self.max_components)
            known, indicator = cond_from_masks(_label_grid(self.mask_u8, self.modality, self.space),
                                               channels=x_prev.shape[1])
            self.cond = torch.cat([known * indicator, indicator], dim=1).to(device=cond.device, dtype=cond.dtype)
            self.last = None
        return self.cond_fn(x_t, t, self.cond)


def _full_logits(label_state: torch.Tensor, space) -> torch.Tensor:
    """The label part of a sampled state -> label-channel logits at full resolution (pixels: itself)."""
    return label_state if space is None else space.grid_to_logits(label_state)


def _label_grid(mask_u8: torch.Tensor, modality: Modality, space) -> torch.Tensor:
    """uint8 masks / label maps -> the label part of the state (pixels: the label channels; latent: the mask grid)."""
    ch = labels_to_channels(mask_u8, modality)
    return ch if space is None else space.labels_to_grid(ch)


def finished_mask(label_channels: torch.Tensor, threshold: float, opening: int, max_components: int = 0):
    """uint8 masks / label maps from model-space label channels: threshold, opening, then (``max_components`` > 0)
    only the largest connected regions."""
    mask_u8 = decode_labels(label_channels, threshold, opening)
    return keep_largest_regions(mask_u8, max_components) if max_components else mask_u8


def visited_levels(scheduler, steps: int) -> list[float]:
    """The noise levels sigma_t = sqrt((1 - a_t) / a_t) of the timesteps ``scheduler`` visits in ``steps`` steps."""
    from .guidance import sigma_of_t

    sch = scheduler.__class__.from_config(scheduler.config)
    sch.set_timesteps(steps)
    sig = sigma_of_t(scheduler.alphas_cumprod)
    return [float(sig[int(t)]) for t in sch.timesteps]


def condition_switch_step(scheduler, steps: int, sigma: float, what: str = "") -> int:
    """The step (0-based) at which ``--condition-at sigma`` fixes the mask: the first one whose noise level is at or
    below sigma. Refused, with the levels the sampler visits, when that is the first step (no mask to fix yet) or
    no step (the setting would silently do nothing)."""
    levels = visited_levels(scheduler, steps)
    shown = ", ".join(f"{v:.3g}" for v in levels)
    k = next((i for i, v in enumerate(levels) if v <= sigma), None)
    if k is None:
        raise FastsynthError(f"--condition-at {sigma:g}: no step of {what or 'the sampler'} reaches that noise level, "
                             f"so the mask would never be fixed (the levels it visits: {shown}); choose a level in "
                             f"[{levels[-1]:.3g}, {levels[0]:.3g})")
    if k == 0:
        raise FastsynthError(f"--condition-at {sigma:g}: the first step of {what or 'the sampler'} is already at or "
                             f"below it, so there is no mask to condition on yet (the levels it visits: {shown}); "
                             f"choose a level below {levels[0]:.3g}")
    return k


def generation_settings(cfg: GenerateConfig, meta: dict | None, net_config):
    """(cfg, scheduler): ``cfg`` with what it leaves open filled in as ``generate`` does (the model's own defaults
    for the mode, then the global ones; sampler and steps resolved) and a scheduler for it."""
    from dataclasses import replace

    from ..config import apply_model_defaults
    from .samplers import make_scheduler, resolve_sampler

    cfg = resolve_guidance(apply_model_defaults(cfg, meta))
    sampler, steps, grid = resolve_sampler(cfg.sampler, cfg.steps, meta or {})
    sch = make_scheduler(sampler, net_config.num_train_timesteps, net_config.beta_schedule,
                         net_config.prediction_type, grid=grid)
    return replace(cfg, sampler=sampler, steps=steps), sch


def _sample_rows(model_fn, scheduler, cfg: GenerateConfig, seeds, known, indicator, res: int, device, init=None,
                 strength: float = 1.0):
    """x0 [N, 4, H, W] for rows with the given seeds (one generator each) and conditioning; ``init`` / ``strength``:
    start part-way from these states (``samplers.sample``)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    noise = torch.stack([torch.randn(known.shape[1], res, res, generator=g) for g in gens])
    cond = torch.cat([known * indicator, indicator], dim=1)
    x0 = sample(model_fn, scheduler, noise.to(device), cond.to(device), cfg.steps,
                generators=gens if cfg.sampler == "ddpm" else None,
                init=None if init is None else init.to(device), strength=strength).float().cpu()
    if not torch.isfinite(x0).all():
        raise FastsynthError("the sampler produced NaN/inf values (try --precision fp32); nothing was written "
                             "for this shard")
    return x0

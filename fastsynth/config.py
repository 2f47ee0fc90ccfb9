"""Frozen configuration dataclasses, one per stage: the only home of defaults.

Every config round-trips through JSON (``to_dict`` / ``from_dict``); ``from_dict`` rejects unknown keys so a
typo in a config file is an error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Type, TypeVar

from .errors import FastsynthError

T = TypeVar("T")

MODES = ("pairs", "from-masks", "inpaint")
FORMATS = ("parquet", "png", "nnunet", "nifti")  # a Hugging Face dataset; PNG folders; an nnU-Net v2 raw dataset;
# 2D NIfTI image + label files
SAMPLERS = ("dpmpp", "unipc", "ddim", "ddpm")


# fields that were removed because nothing read them; old run folders' config.json may still hold them
RETIRED_KEYS = frozenset({"sample_every", "num_workers"})


def from_dict(cls: Type[T], data: Mapping[str, Any], where: str = "config") -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in data.items() if k not in RETIRED_KEYS}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FastsynthError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            v = data[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def to_dict(obj) -> dict:
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class ModelConfig:
    """The denoiser: a diffusers UNet2DModel over [noisy x (4) | known values (4) | known indicator (4)].

    x is RGB in [-1, 1] plus the mask channel in {-1, +1}. The known-value/indicator channels carry the
    conditioning of the three modes (nothing known: new pairs; mask channel known: mask->image; everything
    outside a region known: inpainting), so one network serves all modes with any sampler.
    """

    resolution: int = 64
    data_channels: int = 4
    patch_size: int = 1  # >1: pixel-unshuffle the input so the UNet runs at resolution / patch_size
    block_out_channels: tuple = (64, 128, 128, 256)
    down_block_types: tuple = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    up_block_types: tuple = ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    attention_head_dim: int = 32
    norm_num_groups: int = 32
    dropout: float = 0.0
    num_class_embeds: int | None = None  # reserved for cluster/class conditioning
    # diffusion process
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # v-prediction (Salimans & Ho 2022): with eps-prediction the x0 estimate at t~T divides by
    # sqrt(alpha_bar_T) ~ 0 under the cosine schedule and few-step data-prediction solvers blow up
    prediction_type: str = "v_prediction"
    # the data (issue 11; fastsynth.data.modality): absent from an older config.json = 8-bit RGB + binary mask.
    # data_channels = image_channels + (K - 1) one-hot label channels (1 for a binary mask)
    image_channels: int = 3  # 1 grey, 3 RGB
    image_bits: int = 8  # 8, or 16 (grey)
    intensity_window: tuple | None = None  # (low, high) raw values mapped to [-1, 1]; None: 8-bit [0, 255]
    class_names: tuple | None = None  # None: a binary mask; else the K class names of a label map (0..K-1)
    # latent models (fastsynth.models.latent): the diffusion runs on [z | mask grid] at resolution / 8, z the named
    # autoencoder's latent (checked by the sha256 of its weights), normalised per channel by latent_mean / latent_std
    # (the training cache's statistics); data_channels = latent_channels + the mask grid's channels. None: pixels
    autoencoder: str | None = None
    autoencoder_sha256: str | None = None
    latent_channels: int = 0
    mask_repr: str | None = None
    latent_mean: tuple | None = None
    latent_std: tuple | None = None

    @property
    def in_channels(self) -> int:
        return 3 * self.data_channels

    @property
    def grid(self) -> int:
        """The side of the tensor the diffusion runs on: the resolution, or the latent grid (resolution / 8)."""
        return self.resolution // LATENT_SCALE if self.autoencoder else self.resolution

    @property
    def state_image_channels(self) -> int:
        """Channels of the diffused state before the label channels: the image's, or the latent's."""
        return self.latent_channels if self.autoencoder else self.image_channels


LATENT_SCALE = 8  # pixels per latent cell of the autoencoders (fastsynth.models.autoencoder)
AUTOENCODER_NAMES = ("taef2",)
MASK_REPRS = ("pool", "s2d", "ae")  # the mask in a latent grid (fastsynth.models.latent)
S2D_FACTOR = 4  # s2d: the mask at 4x the latent grid, folded into it
MASK_AE_CHANNELS = 4  # ae: grid channels per foreground class


def mask_grid_channels(mask_repr: str, label_channels: int) -> int:
    """Channels of the mask grid of a latent model for ``label_channels`` (K - 1) label channels."""
    per_class = {"pool": 1, "s2d": S2D_FACTOR ** 2, "ae": MASK_AE_CHANNELS}
    if mask_repr not in per_class:
        raise FastsynthError(f"mask representation {mask_repr!r}: choose one of {', '.join(MASK_REPRS)}")
    return label_channels * per_class[mask_repr]


PRESETS: dict[str, dict] = {
    # for tests: a few thousand parameters, runs in milliseconds
    "tiny": dict(
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=8,
    ),
    # the bundled CPU model: the UNet runs at resolution/2 on pixel-unshuffled input (0.68 GFLOP per
    # network evaluation at 64x64; ~100 evaluations/s on 2 CPU cores; see benchmarks/)
    "small": dict(
        patch_size=2,
        block_out_channels=(32, 64, 96, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=32,
        norm_num_groups=16,
    ),
    # latent models (--latent): the UNet runs on the 32x32 latent grid of a 256^2 image without patching
    "latent": dict(
        patch_size=1,
        block_out_channels=(64, 128, 192, 256),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=32,
        norm_num_groups=32,
    ),
    # close to the reference system's ADM-style network (for GPUs, 256x256)
    "paper": dict(
        block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                          "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D",
                        "UpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        attention_head_dim=64,
        norm_num_groups=32,
        dropout=0.1,
    ),
}


def model_config_for(preset: str, resolution: int, latent: str = "") -> ModelConfig:
    """The network of ``preset`` at ``resolution`` (pixels; a latent model's grid is resolution / 8)."""
    if preset not in PRESETS:
        raise FastsynthError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    levels = len(PRESETS[preset]["block_out_channels"])
    factor = 2 ** (levels - 1) * PRESETS[preset].get("patch_size", 1)
    if latent:
        if latent not in AUTOENCODER_NAMES:
            raise FastsynthError(f"--latent {latent!r}: choose one of {', '.join(AUTOENCODER_NAMES)}")
        if resolution % LATENT_SCALE or resolution < 64:
            raise FastsynthError(f"--resolution {resolution}: a latent model needs a multiple of {LATENT_SCALE}, "
                                 "at least 64")
        grid = resolution // LATENT_SCALE
        if grid % factor:
            raise FastsynthError(f"--resolution {resolution}: its latent grid ({grid}) must be a multiple of {factor} "
                                 f"for preset {preset!r} (resolution a multiple of {factor * LATENT_SCALE})")
        return ModelConfig(resolution=resolution, autoencoder=latent, **PRESETS[preset])
    if resolution % factor or resolution < factor:
        raise FastsynthError(
            f"--resolution {resolution} must be a positive multiple of {factor} for preset {preset!r}"
        )
    return ModelConfig(resolution=resolution, **PRESETS[preset])


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""
    out: str = ""
    preset: str = "small"
    resolution: int = 64
    steps: int = 20000
    batch_size: int = 32
    lr: float = 2e-4
    warmup_steps: int = 200
    # "constant" after the linear warm-up, or "cosine": from lr down to 0 at --steps (a cool-down; with a warm start it
    # anneals a model trained at a constant rate)
    lr_schedule: str = "constant"
    ema_decay: float = 0.999
    ema_warmup: bool = True
    grad_clip: float = 1.0
    test_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    # probability of each conditioning mode per training example
    p_pairs: float = 0.5
    p_from_masks: float = 0.25
    p_inpaint: float = 0.25
    hflip: bool = True
    vflip: bool = False
    # pairs whose foreground lies in the smallest quarter of the training split's non-empty masks (by area) are drawn
    # this many times as often (1: uniform). A model that under-draws small structures (bundled-256 drew 5.7 % of its
    # masks there against 25 % real) is pushed back towards them.
    oversample_small: float = 1.0
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16
    checkpoint_every: int = 1000
    log_every: int = 50
    skip_bad: bool = False
    # "v": plain MSE on v (x0-error weight SNR+1); "min-snr": min(SNR, gamma) / (SNR + 1) on v, i.e. x0-error weight
    # min(SNR, gamma) (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy")
    loss_weighting: str = "v"
    min_snr_gamma: float = 5.0
    # warm start: a model folder (or "bundled") whose weights initialise the network and its EMA
    init_from: str = ""
    # label classes (--classes background,blood-pool,myocardium); empty: found from the masks
    classes: tuple = ()
    # keep stems of one group on one side of the split: "auto" (the part before the first - or _ when that groups
    # stems), "none", or a regular expression whose first group (or whole match) names a stem's group
    group_by: str = "auto"
    # latent diffusion (fastsynth.models.latent): "" = pixels; "taef2" = the bundled tiny autoencoder's latent grid,
    # with the mask in it as mask_repr ("pool" or "s2d")
    latent: str = ""
    mask_repr: str = "pool"
    mask_codec_steps: int = 1500  # mask_repr "ae": optimiser steps of the mask autoencoder, trained before the diffusion
    # NIfTI volumes (fastsynth.data.volumes): the axis slices are cut along (of the RAS+ volume; 2 = axial) and the
    # fraction of empty slices kept (of the number with foreground)
    slice_axis: int = 2
    empty_fraction: float = 0.1


LOSS_WEIGHTINGS = ("v", "min-snr")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class DistillConfig:
    """Progressive distillation (Salimans & Ho 2022): each round halves the DDIM steps of the sampler."""
    teacher: str = "bundled"  # model folder, training run or "bundled"
    out: str = ""
    data: str = ""  # "": the teacher's training data (its card metadata), train split only
    teacher_steps: int = 16  # DDIM steps of the first teacher
    student_steps: int = 4  # steps of the final student (teacher_steps / 2**rounds)
    steps_per_round: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16
    checkpoint_every: int = 250
    log_every: int = 25
    skip_bad: bool = False


@dataclass(frozen=True)
class GenerateConfig:
    n: int = 10000
    mode: str = "pairs"
    sampler: str | None = None  # None: the model's own (a distilled model's grid), else sampling.DEFAULT_SAMPLER
    steps: int | None = None  # None: the default of the sampler (sampling.DEFAULT_STEPS) or the model's own
    batch_size: int = 64
    seed: int = 0
    shard_size: int = 1000
    mask_threshold: float = 0.0
    opening_px_at_256: int = 16  # elliptical kernel size at 256x256, scaled with resolution; 0 = off
    inpaint_dilate_px_at_256: int = 20
    format: str = "parquet"  # parquet | png | nnunet | nifti
    # auto: bf16 / fp16 on a GPU; on the CPU fp32, or bf16 / int8 where that precision's accuracy gate accepted it
    # at the output and the data level and it was measured faster on this machine (runtime.resolve_runtime)
    precision: str = "auto"  # fp32 | bf16 | fp16 | int8 | auto
    backend: str = "auto"  # auto: onnx on CPU when onnxruntime is installed, else eager
    # pairs only: redraw each image from its own generated (cleaned) mask in a second, mask-conditioned pass.
    # None: on for pairs (its data trained segmenters measurably better: README "Synthetic data that trains
    # segmenters"; 3x the network evaluations of plain pairs)
    redraw: bool | None = None
    # classifier-free guidance of the conditional passes (from-masks, inpaint, the redraw of pairs); 1 = off.
    # None: DEFAULT_REDRAW_GUIDANCE for the redraw pass (measured), 1 for from-masks / inpaint (not measured yet)
    guidance: float | None = None
    # guide only the steps whose noise level sigma_t = sqrt((1 - a_t) / a_t) is in (lo, hi] (the others cost one
    # evaluation instead of two); () = every step; None: DEFAULT_REDRAW_GUIDANCE_INTERVAL for the guided redraw of
    # pairs (measured), every step for from-masks / inpaint (not measured yet)
    guidance_interval: tuple[float, ...] | None = None
    # pairs with redraw: keep only the N largest connected regions of each generated mask (0 = keep all) before
    # the image is redrawn from it, so no dropped region stays in the image unlabelled
    max_components: int = 0
    # autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") of the first,
    # unconditional pass of pairs: a weaker model of the same network (fewer training steps) guides the model,
    # out = weak + scale (model - weak), two network evaluations per step. "" = off
    autoguide: str = ""
    autoguide_scale: float = 2.0
    # pairs, one pass: from the first step whose noise level sigma is at or below this value, the mask is fixed
    # (decoded from the joint x0 prediction) and the image is finished conditioned on it, guided like the redraw
    # (sampling.pairs.LateCondition); 0 = off; None: the model's default (``generate_defaults``), else off
    condition_at: float | None = None
    # pairs: a cascade (sampling.cascade): this lower-resolution model draws each pair, the model re-renders it at its
    # resolution, keeping the (upsampled) mask; None: the model's default (``generate_defaults``), else off; "none": off
    base: str | None = None
    # the cascade's re-rendering: the fraction of the sampler's steps that run (the noise level it starts from);
    # None: the model's default, else DEFAULT_CASCADE_STRENGTH
    strength: float | None = None
    # pairs: keep only the pairs whose generated mask agrees with this segmenter (a folder saved by `evaluate
    # --downstream`, trained on real data): Dice(mask, prediction) >= min_agreement, drawing more candidates until
    # each shard is full (runtime.agreement.AgreementScorer); None: the model's default (``generate_defaults``, a path
    # relative to the model folder), else off; "none": off
    keep_agreeing: str | None = None
    # the agreement threshold; None: the model's default with its own segmenter, else DEFAULT_MIN_AGREEMENT
    min_agreement: float | None = None


DEFAULT_MIN_AGREEMENT = 0.5
DEFAULT_CASCADE_STRENGTH = 0.5
DEFAULT_REDRAW_GUIDANCE = 2.0
# its data trained segmenters better than guidance at every step, with 16 instead of 18 network evaluations per
# pair (README "Synthetic data that trains segmenters"; the noise levels of Kynkaanniemi et al. 2024)
DEFAULT_REDRAW_GUIDANCE_INTERVAL = (0.28, 5.42)


def network_batch_size(cfg: GenerateConfig) -> int:
    """The batch the network sees for ``--batch-size cfg.batch_size``: doubled when guidance is on (conditional
    and unconditional outputs in one call). A fixed-shape engine (TensorRT) is built for this batch."""
    return cfg.batch_size * (2 if resolve_guidance(cfg).guidance != 1.0 else 1)


MODEL_DEFAULT_KEYS = ("sampler", "steps", "redraw", "condition_at", "guidance", "guidance_interval", "base", "strength",
                      "keep_agreeing", "min_agreement")


def check_model_defaults(defaults: dict) -> None:
    """Refuse model ``generate_defaults`` ({mode: {setting: value}}) naming an unknown mode or setting."""
    for mode, d in defaults.items():
        unknown = sorted(set(d) - set(MODEL_DEFAULT_KEYS))
        if mode not in MODES or unknown:
            raise FastsynthError(f"the model's generate_defaults for {mode} name unknown settings {unknown} or an "
                                 f"unknown mode; known: modes {', '.join(MODES)}, settings {', '.join(MODEL_DEFAULT_KEYS)}")


def apply_model_defaults(cfg: GenerateConfig, meta: dict | None) -> GenerateConfig:
    """``cfg`` with the settings it leaves open (None) taken from the model's own measured defaults for its mode:
    ``meta["generate_defaults"][mode]`` in the model's fastsynth.json (keys ``MODEL_DEFAULT_KEYS``). A model carries
    the settings its data was judged best with; what a user sets wins. The steps go with the sampler (a model's
    steps apply only to its own sampler), and the image pass (``redraw`` / ``condition_at`` with its guidance) is
    taken as a whole: a user who asks for either one gets none of the model's (the global defaults instead)."""
    d = ((meta or {}).get("generate_defaults") or {}).get(cfg.mode) or {}
    check_model_defaults({cfg.mode: d})
    if not d:
        return cfg
    ch: dict = {}
    if cfg.sampler is None and "sampler" in d:
        ch["sampler"] = d["sampler"]
    if cfg.steps is None and "steps" in d and (cfg.sampler is None or cfg.sampler == d.get("sampler")):
        ch["steps"] = int(d["steps"])
    if cfg.redraw is None and cfg.condition_at is None:  # the image pass and its guidance go together
        ch.update({k: d[k] for k in ("redraw", "condition_at") if k in d})
        if cfg.guidance is None and "guidance" in d:
            ch["guidance"] = float(d["guidance"])
        if cfg.guidance_interval is None and "guidance_interval" in d:
            ch["guidance_interval"] = tuple(float(v) for v in d["guidance_interval"])
    if cfg.base is None and "base" in d:  # the cascade and its strength go together
        ch["base"] = str(d["base"])
        if cfg.strength is None and "strength" in d:
            ch["strength"] = float(d["strength"])
    if cfg.keep_agreeing is None and "keep_agreeing" in d:  # the filter's segmenter and its threshold go together
        ch["keep_agreeing"] = str(d["keep_agreeing"])
        if cfg.min_agreement is None and "min_agreement" in d:
            ch["min_agreement"] = float(d["min_agreement"])
    return dataclasses.replace(cfg, **ch)


def optional_ref(ref) -> str:
    """A reference that "none" turns off (``--base``, ``--keep-agreeing``, or a model default): the reference, or ""
    when off (None, "", "none")."""
    return "" if ref is None or str(ref).strip().lower() in ("", "none") else str(ref)


def resolve_cascade(cfg: GenerateConfig) -> GenerateConfig:
    """``cfg`` with ``base`` resolved to a model reference or "" (off) and ``strength`` to a number when on."""
    base = optional_ref(cfg.base)
    strength = (DEFAULT_CASCADE_STRENGTH if cfg.strength is None else float(cfg.strength)) if base else cfg.strength
    return dataclasses.replace(cfg, base=base, strength=strength)


def resolve_guidance(cfg: GenerateConfig) -> GenerateConfig:
    """``cfg`` with ``redraw``, ``guidance`` and ``guidance_interval`` resolved from None to the measured defaults
    of its mode (the interval to a (lo, hi) pair, or () for every step); resolving twice changes nothing."""
    late = bool(cfg.condition_at) and cfg.mode == "pairs"
    cascade = cfg.mode == "pairs" and bool(optional_ref(cfg.base))
    redraw = (cfg.mode == "pairs" and not late and not cascade) if cfg.redraw is None else cfg.redraw
    guidance = cfg.guidance
    if guidance is None:
        guidance = DEFAULT_REDRAW_GUIDANCE if ((redraw or late) and cfg.mode == "pairs") else 1.0
    interval = cfg.guidance_interval
    if interval is None:
        guided_redraw = (redraw or late) and cfg.mode == "pairs" and float(guidance) != 1.0
        interval = DEFAULT_REDRAW_GUIDANCE_INTERVAL if guided_redraw else ()
    return dataclasses.replace(cfg, redraw=bool(redraw), guidance=float(guidance), guidance_interval=tuple(interval),
                               condition_at=float(cfg.condition_at or 0.0))

"""Samplers over a denoiser *function* (never a model class) and mask decoding."""

from .samplers import DEFAULT_SAMPLER, DEFAULT_STEPS, make_scheduler, resolve_sampler, sample, SAMPLER_NAMES
from .masks import decode_mask, ellipse_kernel, binary_opening, binary_dilation, opening_size

__all__ = ["DEFAULT_SAMPLER", "DEFAULT_STEPS", "make_scheduler", "resolve_sampler", "sample", "SAMPLER_NAMES", "decode_mask", "ellipse_kernel",
           "binary_opening", "binary_dilation", "opening_size"]

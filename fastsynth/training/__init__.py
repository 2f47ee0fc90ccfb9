"""Training: train() with EMA, exact resume and accelerate for several GPUs; distill() for few-step students."""

from .distill import distill
from .train import train

__all__ = ["distill", "train"]

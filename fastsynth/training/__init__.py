"""Training: train() with EMA, exact resume and accelerate for several GPUs."""

from .train import train

__all__ = ["train"]

"""fastsynth: fast synthetic image+mask datasets from diffusion models."""
__version__ = "0.1.0"

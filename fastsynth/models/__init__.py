"""The denoiser network and its save/load (config.json + model.safetensors, diffusers style)."""

from .denoiser import Denoiser, build_unet, load_model, save_model, resolve_model_dir, BUNDLED_MODEL_DIR

__all__ = ["Denoiser", "build_unet", "load_model", "save_model", "resolve_model_dir", "BUNDLED_MODEL_DIR"]

"""The image autoencoder of latent models: TAEF2 (a tiny autoencoder by Ollin Boer Bohan, MIT), written here from
the layout of its weights (``../shared/weights/taef2/README.md``).

An RGB image in [-1, 1] of H x W becomes a latent of 32 channels at H/8 x W/8 and back. Grey images go in
replicated to three channels and come out as the mean of the three. The weights ship inside the package as fp16
safetensors (``fastsynth/weights/taef2/``, with its licence and model card); ``load_autoencoder`` checks them
strictly (no missing or unexpected key) and names the file that does not match.

A model folder records its autoencoder by name and the sha256 of its weights (``ModelConfig.latent``); loading
the autoencoder of a model checks that hash, so a latent model is never decoded by another autoencoder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import FastsynthError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# name -> folder holding encoder.safetensors / decoder.safetensors (+ LICENSE, README.md)
AUTOENCODERS = {"taef2": WEIGHTS_DIR / "taef2"}
SCALE = 8  # pixels per latent cell, each way
LATENT_CHANNELS = 32


def _conv(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class Block(nn.Module):
    """conv-ReLU-conv-ReLU-conv added to the input, then ReLU (keys conv.0/2/4). A mid block first adds a
    channel-mixing branch ``pool`` (1x1 conv 64->256, GroupNorm(4), ReLU, 1x1 conv 256->64) to its input."""

    def __init__(self, c: int = 64, mid: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(c, c), nn.ReLU(), _conv(c, c), nn.ReLU(), _conv(c, c))
        self.pool = nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.GroupNorm(4, 4 * c), nn.ReLU(),
                                  nn.Conv2d(4 * c, c, 1, bias=False)) if mid else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class SoftClamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def build_encoder(c: int = 64, latent: int = LATENT_CHANNELS) -> nn.Sequential:
    """Indices as in the weights: 0 conv 3->c; 1 block; then three times a stride-2 conv and blocks (the last
    three are mid blocks); 14 conv c->latent."""
    return nn.Sequential(
        _conv(3, c), Block(c),
        _conv(c, c, 2, bias=False), Block(c), Block(c), Block(c),
        _conv(c, c, 2, bias=False), Block(c), Block(c), Block(c),
        _conv(c, c, 2, bias=False), Block(c, mid=True), Block(c, mid=True), Block(c, mid=True),
        _conv(c, latent))


def build_decoder(c: int = 64, latent: int = LATENT_CHANNELS) -> nn.Sequential:
    """0 soft clamp; 1 conv latent->c; 2 ReLU; 3-5 mid blocks; three times (x2 nearest upsample, conv without
    bias, blocks: three, three, one); 19 conv c->3."""
    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    return nn.Sequential(
        SoftClamp(), _conv(latent, c), nn.ReLU(), Block(c, mid=True), Block(c, mid=True), Block(c, mid=True),
        up(), _conv(c, c, bias=False), Block(c), Block(c), Block(c),
        up(), _conv(c, c, bias=False), Block(c), Block(c), Block(c),
        up(), _conv(c, c, bias=False), Block(c),
        _conv(c, 3))


class Decoder(nn.Module):
    """latent [N, 32, h, w] (the autoencoder's own scale) -> image [N, C, 8h, 8w] in [-1, 1] (C = 1: grey, the
    mean of the three outputs). Plain tensors in and out, so it exports like the denoiser."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.net = build_decoder()
        self.channels = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z).clamp(0, 1) * 2 - 1
        return x.mean(1, keepdim=True) if self.channels == 1 else x


class Encoder(nn.Module):
    """image [N, C, H, W] in [-1, 1] (C = 1 is replicated to RGB) -> latent [N, 32, H/8, W/8]."""

    def __init__(self):
        super().__init__()
        self.net = build_encoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net((x + 1) / 2)


class Autoencoder(nn.Module):
    """Encoder + decoder of one named autoencoder; ``encode`` / ``decode`` work in batches (``batch_size``)."""

    def __init__(self, name: str, sha256: str, channels: int = 3):
        super().__init__()
        self.name, self.sha256 = name, sha256
        self.encoder = Encoder()
        self.decoder = Decoder(channels)

    @property
    def channels(self) -> int:
        return self.decoder.channels

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        _check_size(x.shape[-2:])
        batch_size = ae_batch_size(x.device, batch_size)
        return torch.cat([self.encoder(x[i:i + batch_size].float()) for i in range(0, len(x), batch_size)])

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        batch_size = ae_batch_size(z.device, batch_size)
        return torch.cat([self.decoder(z[i:i + batch_size].float()) for i in range(0, len(z), batch_size)])


# images per encoder / decoder call on a CPU: at 256² a call of 16 holds ~400 MB more activations than a call of 2
# and is no faster per image (one thread: OpenVINO bf16 decoder 37-38 against 33-34 ms, eager within 5 %;
# benchmarks/ae_batch.py, benchmarks/NOTES.md); GPUs take up to 16
CPU_AE_BATCH = 2
GPU_AE_BATCH = 16


def ae_batch_size(device, batch_size: int | None = None) -> int:
    """Images per encoder / decoder call on ``device`` for a batch of ``batch_size`` (None: the device's most)."""
    cap = CPU_AE_BATCH if torch.device(device).type == "cpu" else GPU_AE_BATCH
    return cap if batch_size is None else max(1, min(int(batch_size), cap))


def _check_size(hw) -> None:
    if any(int(s) % SCALE for s in hw):
        raise FastsynthError(f"the autoencoder needs image sizes that are multiples of {SCALE}; got "
                             f"{tuple(int(s) for s in hw)}")


def autoencoder_dir(name: str) -> Path:
    if name not in AUTOENCODERS:
        raise FastsynthError(f"unknown autoencoder {name!r}; choose one of {', '.join(sorted(AUTOENCODERS))}")
    d = AUTOENCODERS[name]
    if not (d / "decoder.safetensors").exists():
        raise FastsynthError(f"the autoencoder {name!r} is missing from the installation ({d}); reinstall fastsynth")
    return d


def autoencoder_sha256(name: str) -> str:
    """The identity of an autoencoder: sha256 over its encoder and decoder weight files, in that order."""
    import hashlib

    d = autoencoder_dir(name)
    h = hashlib.sha256()
    for part in ("encoder", "decoder"):
        h.update((d / f"{part}.safetensors").read_bytes())
    return h.hexdigest()


def _load_strict(module: nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FastsynthError(f"{path}: unreadable safetensors file ({exc})") from None
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad_shape = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise FastsynthError(f"{path}: weights do not match the autoencoder's layout (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}, wrong shape {sorted(bad_shape)[:3]})")
    module.load_state_dict({k: v.float() for k, v in state.items()})


def load_autoencoder(name: str = "taef2", sha256: str | None = None, channels: int = 3) -> Autoencoder:
    """The named autoencoder in eval mode (fp32). ``sha256``: the hash a model folder recorded; a different one
    is refused (the latent space would not be the model's)."""
    d = autoencoder_dir(name)
    actual = autoencoder_sha256(name)
    if sha256 is not None and sha256 != actual:
        raise FastsynthError(f"the model was trained on autoencoder {name!r} with weights sha256 {sha256[:12]}..., "
                             f"the installed one is {actual[:12]}... ({d}); install the fastsynth version the model "
                             "was made with")
    ae = Autoencoder(name, actual, channels)
    _load_strict(ae.encoder.net, d / "encoder.safetensors")
    _load_strict(ae.decoder.net, d / "decoder.safetensors")
    return ae.eval().requires_grad_(False)


def convert_taef2(src_dir: str | os.PathLike, dest: Path | None = None) -> Path:
    """Write the published TAEF2 state dicts (``taef2_encoder.pth`` / ``taef2_decoder.pth``, loaded with
    ``weights_only=True``: tensors only, nothing unpickled) as fp16 safetensors into the package, after checking
    them strictly against the layout above."""
    from safetensors.torch import save_file

    src, dest = Path(src_dir), Path(dest or AUTOENCODERS["taef2"])
    dest.mkdir(parents=True, exist_ok=True)
    for part, build in (("encoder", build_encoder), ("decoder", build_decoder)):
        state = torch.load(src / f"taef2_{part}.pth", map_location="cpu", weights_only=True)
        net = build()
        net.load_state_dict(state, strict=True)
        save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(dest / f"{part}.safetensors"),
                  metadata={"format": "pt", "source": "madebyollin/taesd taef2", "license": "MIT"})
    return dest


if __name__ == "__main__":  # python -m fastsynth.models.autoencoder ../shared/weights/taef2
    import sys

    print(convert_taef2(sys.argv[1]))

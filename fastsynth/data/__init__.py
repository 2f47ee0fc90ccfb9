"""Reading labeled image/mask data: folders in the Kvasir-SEG layout or Hugging Face datasets on disk."""

from .codec import mask_to_channel, channel_to_mask, image_to_tensor, tensor_to_image
from .pairs import PairSource, scan_pairs, load_pairs
from .split import make_split

__all__ = [
    "mask_to_channel", "channel_to_mask", "image_to_tensor", "tensor_to_image",
    "PairSource", "scan_pairs", "load_pairs", "make_split",
]

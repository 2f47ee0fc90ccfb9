"""Evaluation of synthetic image+mask datasets: pure metric functions, one module per metric family.

- ``fid``: Inception features -> statistics -> Fréchet distance / KID (clean-fid protocol)
- ``msssim``: SSIM / MS-SSIM and the mean pairwise MS-SSIM diversity score
- ``masks``: mask statistics (area, components, centroids) and their distances to a real set
- ``memorization``: nearest real training image per synthetic image, near-copy flags
- ``downstream``: segmentation benchmark (segmentation_models_pytorch) under the paper's protocols
- ``io``: reading a fastsynth dataset folder and a real reference (folder or training run with split.json)

Heavy packages (torch, scipy, segmentation_models_pytorch) are imported inside the functions that use them,
so ``import fastsynth.metrics`` stays light.
"""

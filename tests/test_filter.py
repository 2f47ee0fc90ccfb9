import numpy as np
import pytest

pytest.importorskip("segmentation_models_pytorch")

from fastsynth.config import GenerateConfig
from fastsynth.errors import FastsynthError
from fastsynth.metrics import downstream as ds
from fastsynth.metrics.filter import filter_dataset
from fastsynth.pipeline import generate


def test_filter_keeps_agreeing_pairs_and_records_scores(tiny_model_dir, tmp_path):
    import datasets

    generate(GenerateConfig(n=10, steps=3, batch_size=5, shard_size=4, backend="eager"), tmp_path / "syn",
             model=str(tiny_model_dir), progress=False)
    cfg = ds.SegConfig(arch="unet", encoder="resnet18", encoder_weights=None, encoder_depth=3,
                       decoder_channels=(16, 8, 4), resolution=16)
    model, _ = ds.build_model(cfg)
    ds.save_segmenter(model, cfg, tmp_path / "seg")
    seg, _, _ = ds.load_segmenter(tmp_path / "seg")

    syn = datasets.load_dataset(str(tmp_path / "syn"), split="train", cache_dir=str(tmp_path / "c0"))
    ims = np.stack([np.array(x) for x in syn["image"]]).transpose(0, 3, 1, 2)
    mks = np.stack([np.array(x) for x in syn["mask"]])
    dice, _ = ds.dice_iou(ds.predict(seg, ims), mks >= 128)
    thr = float(np.median(dice))

    info = filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "flt", thr, progress=False)
    out = datasets.load_dataset(str(tmp_path / "flt"), split="train", cache_dir=str(tmp_path / "c1"))
    assert info["total"] == 10 and info["kept"] == int((dice >= thr).sum()) == out.num_rows
    assert out["index"] == [i for i in range(10) if dice[i] >= thr]
    assert np.allclose(out["agreement"], dice[dice >= thr], atol=1e-6)
    assert "Label-consistency filter" in (tmp_path / "flt" / "README.md").read_text()
    with pytest.raises(FastsynthError, match="between 0 and 1"):
        filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "x", 1.5, progress=False)

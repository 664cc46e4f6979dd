"""``fit.distribute: mirrored`` trains ``model.arch: yamnet`` on every device, not on one.

Two logical CPU devices stand in for two GPUs.  They must be set before TensorFlow starts its devices,
so the training runs in a fresh interpreter that sets them first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import training_data as td
from support.shared import ROOT, shared_dir

pytestmark = pytest.mark.slow

YAMNET = shared_dir() / "peers" / "yamnet_spectra_in.tflite"

_TRAIN = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from training.data import prepare
from training.fit import audioset_fit
from training.recipe.load import load

loaded = load(sys.argv[1])
prepared = prepare.prepare(loaded)
net = audioset_fit.train(loaded, prepared)
kernel = net.get_layer("scores").kernel
print(json.dumps({
    "replicas": net.distribute_strategy.num_replicas_in_sync,
    "devices": sorted(v.device for v in kernel.value.values),
    "outputs": sorted(net.output),
}))
"""


def _config(tmp_path: Path) -> Path:
    tree = td.tone_tree(tmp_path / "tones", per_class=4)
    cfg = tmp_path / "mirrored.yaml"
    cfg.write_text(
        f"data: {{manifest: '', audio_root: {tree}, val_fraction: 0.25, test_fraction: 0.25, cache_dir: cache,"
        " workers: 1}\n"
        "features: {scale: mel_htk, spectrum: magnitude, filter_norm: peak, triangles: warped, log_offset: 0.001,\n"
        "  db_floor: -60.0, db_ceiling: 60.0}\n"
        "window: {window_frames: 96, hop_frames: 20}\n"
        f"model: {{arch: yamnet, weights: {YAMNET}, output: sigmoid}}\n"
        "fit: {head_epochs: 1, finetune_epochs: 1, crops_per_clip: 2, batch_size: 8, cache_copies: 1,\n"
        "  unfreeze_blocks: 1, distribute: mirrored}\n"
        "output: run\n"
    )
    return cfg


def test_yamnet_trains_mirrored_over_two_devices(tmp_path: Path) -> None:
    if not YAMNET.is_file():
        pytest.skip(f"missing {YAMNET}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN, str(_config(tmp_path))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["replicas"] == 2
    assert [d.rsplit("/", 1)[-1] for d in found["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert found["outputs"] == ["audioset", "scores"]
    run = tmp_path / "run"
    assert (run / "model.keras").is_file()
    assert (run / "history_head.csv").is_file() and (run / "history_finetune.csv").is_file()
    for part in ("train-0.npz", "val.npz"):  # each window once, not once per device
        with np.load(run / "lwf_cache" / part) as cached:
            assert len(cached["acts"]) == len(cached["scores"]) == len(cached["audioset"]) > 0

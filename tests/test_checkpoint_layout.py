"""The checkpoint folder layout (aura_model/checkpoint_layout.py): which checkpoints are complete, read without
loading the trainer, and the same answer the trainer's own checkpoint writer leads to."""

from __future__ import annotations

import subprocess
import sys

from aura_model.checkpoint_layout import default_checkpoint_dir, latest_checkpoint, list_checkpoints, step_name


def test_only_folders_with_their_state_written_count_oldest_first(tmp_path):
    root = tmp_path / "run.checkpoints"
    assert list_checkpoints(root) == [] and latest_checkpoint(root) is None  # no folder yet
    for step in (120, 40, 1000):
        (root / step_name(step)).mkdir(parents=True)
        (root / step_name(step) / "state.json").write_text("{}")
    (root / step_name(2000)).mkdir()  # state.json not written yet: killed while writing
    (root / ".tmp-step-00003000").mkdir()
    (root / "step-abc").mkdir()
    (root / "step-00005000").write_text("a file, not a checkpoint")
    assert [s for s, _ in list_checkpoints(root)] == [40, 120, 1000]
    assert latest_checkpoint(root) == root / "step-00001000"
    assert default_checkpoint_dir(tmp_path / "bundle") == tmp_path / "bundle.checkpoints"


def test_the_app_reads_checkpoints_without_loading_torch_or_the_trainer():
    code = ("import sys, app.train_presets; "
            "print(sorted(m for m in ('torch', 'aura_model.train', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_the_trainer_writes_what_the_layout_reads(tmp_path):
    import torch

    from aura_model.train import checkpoint

    root = tmp_path / "run.checkpoints"
    for step in (10, 20, 30):
        tmp = checkpoint.temp_dir(root, step)
        tmp.mkdir(parents=True)
        checkpoint.save_common(tmp, {"w": torch.zeros(2)}, {"state": {}, "param_groups": []}, {}, None, {"step": step})
        assert list_checkpoints(root) == [(s, root / step_name(s)) for s in (10, 20) if s < step]  # not yet committed
        checkpoint.commit(tmp, root, step, keep=2)
    assert [s for s, _ in list_checkpoints(root)] == [20, 30]
    assert checkpoint.read_state(latest_checkpoint(root))["step"] == 30

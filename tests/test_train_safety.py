"""The trainer never deletes what the user did not ask it to, finds an unwritable output before the work,
keeps the trained weights when the bundle cannot be written, never hangs on a pipe and reads a data set
only from inside its folder (links leading out are followed only when asked)."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch

from aura_model.errors import AuraError
from aura_model.testing import make_clip_folder, save_tiny_base, save_tiny_whisper
from aura_model.train import build_spec, train
from aura_model.train.config import DatasetConfig
from aura_model.train.data import DataReport, FolderSource
from aura_model.train.output import check_output
from aura_model.train.teacher import Teacher, inspect_teacher

TINY = {"train.num_threads": "1", "embedding.conv_channels": "32", "lora.r": "4", "train.response_max_tokens": "4",
        "train.batch_size": "4", "train.max_steps": "2", "train.val_fraction": "0", "train.eval_at_end": "false"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    return {"base": save_tiny_base(root / "base"), "whisper": save_tiny_whisper(root / "whisper"),
            "clips": make_clip_folder(root / "clips", 6), "cache": root / "cache"}


def spec(world, out, data=None, **overrides):
    o = dict(TINY, **{"train.cache_dir": str(world["cache"])}, **overrides)
    return build_spec(None, o, {"teacher": str(world["whisper"]), "student": str(world["base"]),
                                "data": str(data or world["clips"]), "output": str(out)})


def refused_before_work(world, out, data=None, match=""):
    """train() refuses at once: the teacher cache stays untouched (no clip was read)."""
    cache = world["cache"]
    before = sorted(p.name for p in cache.rglob("*")) if cache.exists() else []
    with pytest.raises(AuraError, match=match):
        train(spec(world, out, data))
    after = sorted(p.name for p in cache.rglob("*")) if cache.exists() else []
    assert after == before


# ---------------------------------------------------------------------- 1. never replace the user's files
def test_an_output_folder_of_the_users_own_files_is_refused_and_kept(world, tmp_path):
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "important.txt").write_text("my thesis")
    refused_before_work(world, mine, match=r"already holds 1 item\(s\) that are not an AuRA bundle \(important.txt\)")
    assert (mine / "important.txt").read_text() == "my thesis"


def test_an_output_that_is_a_file_is_refused_and_kept(world, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    refused_before_work(world, f, match="is a file, not a folder")
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_output_and_data_must_not_overlap(world, tmp_path, where):
    data = shutil.copytree(world["clips"], tmp_path / "data")
    out = {"same": data, "inside": data / "adapter", "around": tmp_path}[where]
    count = len(list(data.iterdir()))
    refused_before_work(world, out, data=data, match="training data")
    assert len(list(data.iterdir())) == count


def test_an_empty_folder_and_an_earlier_bundle_may_be_replaced(world, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first = train(spec(world, empty))
    assert (first.output / "aura_config.json").is_file()
    again = train(spec(world, empty))  # the same command twice: the bundle it wrote is replaced
    assert again.exit_code == 0 and (again.output / "aura_config.json").is_file()


# ---------------------------------------------------------------------- 2-3. unwritable output, full disk
def test_an_unwritable_output_is_found_before_any_work(world, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    refused_before_work(world, blocker / "adapter", match="cannot write to")  # even root cannot mkdir under a file
    with pytest.raises(AuraError, match="cannot write to"):
        check_output("/proc/aura-adapter", "nowhere", tmp_path / "ckpt")  # a read-only file system


def test_a_full_disk_at_the_end_keeps_the_weights_and_resume_writes_the_bundle(world, tmp_path, monkeypatch):
    import aura_model.train.loop as loop

    out = tmp_path / "adapter"
    real_save = loop.save_bundle

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loop, "save_bundle", full_disk)
    with pytest.raises(AuraError) as err:
        train(spec(world, out))
    message = str(err.value)
    assert "could not write the bundle" in message and "no space left on the device (" in message
    assert "MB free" in message and "--resume" in message and "\n" not in message
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".adapter.tmp")]
    checkpoints = tmp_path / "adapter.checkpoints"
    assert any(p.name.startswith("step-") for p in checkpoints.iterdir())

    monkeypatch.setattr(loop, "save_bundle", real_save)
    resumed = train(build_spec(None, dict(TINY, **{"train.cache_dir": str(world["cache"])}),
                               {"teacher": str(world["whisper"]), "student": str(world["base"]),
                                "data": str(world["clips"]), "output": str(out)}, resume=True))
    assert resumed.exit_code == 0 and resumed.steps == 2 and (out / "aura_config.json").is_file()


def test_a_full_disk_while_checkpointing_leaves_no_half_checkpoint(world, tmp_path, monkeypatch):
    from aura_model.train import checkpoint as ckpt

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_common", full_disk)
    out = tmp_path / "adapter"
    with pytest.raises(AuraError, match=r"could not write checkpoint .*no space left on the device"):
        train(spec(world, out, **{"train.checkpoint_every": "1"}))
    leftovers = list((tmp_path / "adapter.checkpoints").iterdir())
    assert leftovers == []


# ---------------------------------------------------------------------- 6-7. pipes and links in a data folder
def listing(root, **cfg):
    report = DataReport(str(root), "folder")
    items = FolderSource(root, DatasetConfig(**cfg)).items(report)
    return sorted(it.key for it in items), {s["item"]: s["reason"] for s in report.skipped}


def test_a_fifo_in_the_data_folder_is_skipped_and_reported(world, tmp_path):
    data = shutil.copytree(world["clips"], tmp_path / "data")
    os.mkfifo(data / "stuck.wav")
    keys, skipped = listing(data)
    assert "stuck.wav" not in keys and len(keys) == 6
    assert "not a regular file" in skipped["stuck.wav"]


def test_a_link_to_the_parent_is_not_followed(world, tmp_path):
    data = shutil.copytree(world["clips"], tmp_path / "data")
    make_clip_folder(tmp_path / "elsewhere", 2)  # beside the data: must not be pulled in
    (data / "up").symlink_to("..", target_is_directory=True)
    keys, skipped = listing(data)
    assert len(keys) == 6 and not any(k.startswith("up/") for k in keys)
    assert "contains the data folder" in skipped["up"]


def test_a_link_leading_outside_is_followed_only_when_asked(world, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = make_clip_folder(tmp_path / "store", 3)
    (data / "wavs").symlink_to(store, target_is_directory=True)
    keys, skipped = listing(data)
    assert keys == [] and "follow_links_outside" in skipped["wavs"]
    keys, skipped = listing(data, follow_links_outside=True)
    assert len(keys) == 3 and skipped == {}


def test_a_link_inside_the_data_folder_is_followed(world, tmp_path):
    data = shutil.copytree(world["clips"], tmp_path / "data")
    (data / "again").symlink_to(data, target_is_directory=True)  # a loop inside: walked once
    keys, skipped = listing(data)
    assert len(keys) == 6 and skipped == {}


# ---------------------------------------------------------------------- 10. teachers load from safetensors only
def test_a_teacher_with_only_pickle_weights_is_refused_with_a_clear_message(world, tmp_path):
    from safetensors.torch import load_file

    pickled = shutil.copytree(world["whisper"], tmp_path / "pickled-whisper")
    state = load_file(str(pickled / "model.safetensors"))
    torch.save(state, pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    info = inspect_teacher(str(pickled))
    with pytest.raises(AuraError, match="no safetensors weights; pickle files"):
        Teacher.load(info, torch.device("cpu"), torch.float32)

"""A bundle with broken weights never answers: corrupt bytes, NaN tensors, missing files and edited
metadata are refused by loading and by `aura info` alike, each with a message naming what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aura_model.bundle import (ADAPTER_NAME, CONFIG_NAME, EMBEDDING_NAME, bundle_base_ref, bundle_info, load_bundle,
                               read_bundle_config, validate_bundle)
from aura_model.config import RuntimeConfig
from aura_model.errors import AuraError

from helpers import make_bundle

CPU = RuntimeConfig(device="cpu", quantization="none")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    bundle, _ = make_bundle(tmp_path_factory.mktemp("integrity"))
    return bundle


@pytest.fixture
def bundle(pristine, tmp_path):
    """A private copy each test may break."""
    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


def overwrite_middle(path: Path, n: int = 4096, seed: int = 0) -> None:
    """Random bytes over part of the tensor data, leaving the safetensors header intact (silent corruption)."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    start = header + (len(data) - header) // 3
    n = min(n, len(data) - start)
    data[start:start + n] = torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed),
                                          dtype=torch.uint8).numpy().tobytes()
    path.write_bytes(bytes(data))


def refusals(bundle: Path) -> tuple[str, str]:
    """The messages of load_bundle and bundle_info (what `aura chat` and `aura info` say)."""
    messages = []
    for check in (lambda: load_bundle(bundle, CPU), lambda: bundle_info(bundle)):
        with pytest.raises(AuraError) as err:
            check()
        messages.append(str(err.value))
    return messages[0], messages[1]


def test_save_records_a_checksum_of_every_weight_file(pristine):
    checksums = read_bundle_config(pristine)["checksums"]
    assert set(checksums) == {ADAPTER_NAME, EMBEDDING_NAME, "base/model.safetensors"}
    assert all(len(v) == 64 for v in checksums.values())
    validate_bundle(pristine)  # the fresh bundle passes


def test_random_bytes_inside_the_adapter_are_refused_by_checksum(bundle):
    overwrite_middle(bundle / ADAPTER_NAME)
    for message in refusals(bundle):
        assert ADAPTER_NAME in message and "checksum" in message


def test_corrupt_adapter_without_recorded_checksums_is_still_caught_when_unreadable(bundle):
    meta = json.loads((bundle / CONFIG_NAME).read_text())
    del meta["checksums"]  # a bundle saved before checksums existed
    (bundle / CONFIG_NAME).write_text(json.dumps(meta))
    (bundle / ADAPTER_NAME).write_bytes((bundle / ADAPTER_NAME).read_bytes()[:100])  # truncated
    for message in refusals(bundle):
        assert ADAPTER_NAME in message and "unreadable" in message


@pytest.mark.parametrize("name", [EMBEDDING_NAME, ADAPTER_NAME])
def test_nan_weights_are_refused_naming_file_and_tensor(bundle, name):
    state = load_file(str(bundle / name))
    first = sorted(state)[0]
    state[first] = torch.full_like(state[first], float("nan"))
    save_file(state, str(bundle / name))
    meta = json.loads((bundle / CONFIG_NAME).read_text())
    del meta["checksums"]  # so that the finiteness check, not the checksum, has to catch it
    (bundle / CONFIG_NAME).write_text(json.dumps(meta))
    for message in refusals(bundle):
        assert name in message and first in message and "NaN" in message


@pytest.mark.parametrize("missing", [ADAPTER_NAME, EMBEDDING_NAME, "adapter_config.json"])
def test_missing_weight_files_are_refused_by_info_too(bundle, missing):
    (bundle / missing).unlink()
    for message in refusals(bundle):
        assert missing in message


def test_edited_fingerprint_is_refused_by_info_as_by_loading(bundle):
    meta = json.loads((bundle / CONFIG_NAME).read_text())
    meta["base"]["fingerprint"]["vocab_size"] += 1
    (bundle / CONFIG_NAME).write_text(json.dumps(meta))
    for message in refusals(bundle):
        assert "vocab_size" in message


def test_a_missing_fingerprint_key_is_named_not_a_key_error(bundle):
    meta = json.loads((bundle / CONFIG_NAME).read_text())
    del meta["base"]["fingerprint"]["hidden_size"]
    (bundle / CONFIG_NAME).write_text(json.dumps(meta))
    for message in refusals(bundle):
        assert "fingerprint lacks hidden_size" in message


def test_relative_base_id_is_read_against_the_bundle_not_the_current_folder(bundle, tmp_path, monkeypatch):
    meta = read_bundle_config(bundle)
    shutil.move(str(bundle / "base"), str(bundle / "llm"))
    meta["base"]["id"] = "llm"
    (bundle / CONFIG_NAME).write_text(json.dumps(meta))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "llm").mkdir(parents=True)  # a decoy of the same name where the command runs
    monkeypatch.chdir(elsewhere)
    assert bundle_base_ref(bundle, meta) == str(bundle / "llm")
    assert load_bundle(bundle, CPU).base_ref == str(bundle / "llm")


def test_a_hub_id_stays_a_hub_id(bundle):
    meta = read_bundle_config(bundle)
    meta["base"]["id"] = "Qwen/Qwen2.5-0.5B-Instruct"
    shutil.rmtree(bundle / "base")
    assert bundle_base_ref(bundle, meta) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_a_link_leading_outside_the_bundle_is_reported(bundle, tmp_path):
    outside = tmp_path / "outside-base"
    shutil.move(str(bundle / "base"), str(outside))
    os.symlink(outside, bundle / "base")
    assert any("outside-base" in link for link in bundle_info(bundle)["links_outside"])
    loaded = load_bundle(bundle, CPU)
    assert any("leads outside the bundle" in n for n in loaded.resolved.notices)


def test_the_shipped_bundle_passes_every_check():
    root = Path(__file__).resolve().parents[1] / "assets" / "default_bundle"
    meta = validate_bundle(root)
    assert {ADAPTER_NAME, EMBEDDING_NAME} <= set(meta["checksums"])


@pytest.mark.parametrize("damage", ["fingerprint", "adapter", "corrupt"])
def test_aura_info_exits_1_with_the_reason_for_what_aura_chat_refuses(bundle, capsys, damage):
    from app.cli import main

    if damage == "fingerprint":
        meta = json.loads((bundle / CONFIG_NAME).read_text())
        meta["base"]["fingerprint"]["num_hidden_layers"] = 99
        (bundle / CONFIG_NAME).write_text(json.dumps(meta))
    elif damage == "adapter":
        (bundle / ADAPTER_NAME).unlink()
    else:
        (bundle / EMBEDDING_NAME).write_bytes(b"\0" * 64)
    for argv in (["info", str(bundle)], ["chat", "--bundle", str(bundle), "--text", "hi"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("aura: error: ") and "unexpected error" not in err, err

"""Training data: folders with .txt / metadata transcripts, Hugging Face datasets, bad items, the split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from aura_model.config import AudioConfig
from aura_model.errors import AuraError
from aura_model.train.config import DatasetConfig
from aura_model.train.data import DataReport, list_items, open_source, split_items
from aura_model.train.prepare import Ranks, validate_items
from aura_model.train.progress import Reporter
from aura_model.testing import speech_like


def wav(path, seconds=0.6, seed=0, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), speech_like(seconds, seed, sr), sr)
    return path


def discover(folder, **cfg):
    cfg = DatasetConfig(**cfg)
    report = DataReport(str(folder), "")
    source = open_source(str(folder), cfg)
    return source, list_items(source, cfg, report), report


def test_folder_with_txt_csv_and_jsonl_transcripts(tmp_path):
    wav(tmp_path / "a.wav", seed=1)
    (tmp_path / "a.txt").write_text("  turn on\nthe light \n")
    wav(tmp_path / "sub" / "b.flac", seed=2)
    (tmp_path / "sub" / "metadata.csv").write_text("file_name,transcription\nb.flac,what time is it\n")
    wav(tmp_path / "c" / "c.ogg", seed=3)
    (tmp_path / "c" / "metadata.jsonl").write_text(json.dumps({"file_name": "c.ogg", "text": "hello"}) + "\n")
    wav(tmp_path / "d.wav", seed=4)  # no transcript at all: allowed (the teacher may write one)
    wav(tmp_path / ".hidden" / "x.wav", seed=5)  # hidden folders (caches) are not data
    (tmp_path / "notes.md").write_text("not audio")
    source, items, report = discover(tmp_path)
    got = {it.key: it.transcript for it in items}
    assert got == {"a.wav": "turn on the light", "sub/b.flac": "what time is it", "c/c.ogg": "hello", "d.wav": None}
    assert report.skipped == []
    assert source.kind == "folder"
    wave = source.load(items[0], AudioConfig())
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 9600


def test_folder_follows_a_linked_audio_folder_when_asked_and_walks_a_loop_once(tmp_path):
    store = tmp_path / "store"  # the audio lives elsewhere (another disk), linked into the data set
    wav(store / "a.wav", seed=1)
    wav(store / "b.wav", seed=2)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wavs").symlink_to(store, target_is_directory=True)
    (store / "up").symlink_to(data, target_is_directory=True)  # a loop: store/up -> data -> wavs -> store
    wav(data / "extra" / "c.wav", seed=3)
    (data / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f, "text": t}) + "\n" for f, t in
                                                 [("wavs/a.wav", "one"), ("wavs/b.wav", "two"), ("extra/c.wav", "three")]))
    _, items, report = discover(data, follow_links_outside=True)
    got = {it.key: it.transcript for it in items}
    assert got == {"wavs/a.wav": "one", "wavs/b.wav": "two", "extra/c.wav": "three"}
    assert report.skipped == []


def test_bad_items_are_reported_not_fatal(tmp_path):
    wav(tmp_path / "good1.wav", seed=1)
    (tmp_path / "good1.txt").write_text("one")
    wav(tmp_path / "good2.wav", seed=2)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(200)))
    (tmp_path / "corrupt.txt").write_text("two")
    (tmp_path / "empty.wav").write_bytes(b"")
    wav(tmp_path / "zero_transcript.wav", seed=3)
    (tmp_path / "zero_transcript.txt").write_bytes(b"")
    sf.write(str(tmp_path / "silent.wav"), np.zeros(8000, np.float32), 16000)
    wav(tmp_path / "long.wav", seconds=3.0, seed=4)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.wav", "text": "x"}\nnot json\n')
    source, items, report = discover(tmp_path)
    usable = validate_items(items, source, AudioConfig(), report, Reporter(), Ranks(), teacher_window_s=2.0)
    assert sorted(it.key for it in usable) == ["good1.wav", "good2.wav"]
    reasons = {s["item"]: s["reason"] for s in report.skipped}
    assert "transcript file zero_transcript.txt is empty" == reasons["zero_transcript.wav"]
    assert "cannot read audio" in reasons["corrupt.wav"]
    assert "empty.wav" in reasons and "silent" in reasons["silent.wav"]
    assert "longer than the teacher's 2 s window" in reasons["long.wav"]
    assert "gone.wav" in reasons["metadata.jsonl:1"] and "not valid JSON" in reasons["metadata.jsonl:2"]
    assert all(len(it.audio_hash) == 64 for it in usable)
    assert report.to_dict()["n_skipped"] == len(report.skipped) == 7


def test_same_audio_same_hash_whatever_the_container(tmp_path):
    x = speech_like(0.5, 7)
    sf.write(str(tmp_path / "x.wav"), x, 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "x.aiff"), x, 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "y.wav"), speech_like(0.5, 8), 16000, subtype="FLOAT")
    source, items, report = discover(tmp_path)
    usable = validate_items(items, source, AudioConfig(), report, Reporter(), Ranks(), None)
    h = {it.key: it.audio_hash for it in usable}
    assert h["x.wav"] == h["x.aiff"] != h["y.wav"]


def test_split_is_seeded_stable_and_disjoint(tmp_path):
    from aura_model.train.data import Item

    items = [Item(key=f"k{i:02d}") for i in range(20)]
    tr, va = split_items(items, 0.2, 64, seed=0)
    tr2, va2 = split_items(list(reversed(items)), 0.2, 64, seed=0)
    assert [i.key for i in va] == [i.key for i in va2] and len(va) == 4 and len(tr) == 16
    assert not {i.key for i in tr} & {i.key for i in va}
    _, va3 = split_items(items, 0.2, 64, seed=1)
    assert {i.key for i in va3} != {i.key for i in va}
    assert len(split_items(items, 0.5, 3, seed=0)[1]) == 3  # capped by max_val_items
    assert split_items(items[:1], 0.5, 3, seed=0) == (items[:1], [])  # one item: all training


def test_split_keeps_recordings_of_one_sentence_on_one_side():
    from aura_model.train.data import Item

    sentences = [f"sentence number {i}" for i in range(10)]
    items = [Item(key=f"k{i:02d}_r{r}", transcript=s if r else f"  Sentence  NUMBER {i} ") for i, s in enumerate(sentences)
             for r in range(4)]
    tr, va = split_items(items, 0.2, 64, seed=0)
    assert len(va) == 8 and len(tr) == 32
    words = lambda its: {" ".join(it.transcript.lower().split()) for it in its}  # noqa: E731
    assert len(words(va)) == 2 and not words(va) & words(tr)
    unique = [Item(key=f"k{i:02d}", transcript=f"text {i}") for i in range(20)]
    plain = [Item(key=f"k{i:02d}") for i in range(20)]
    assert [i.key for i in split_items(unique, 0.2, 64, 0)[1]] == [i.key for i in split_items(plain, 0.2, 64, 0)[1]]
    one_sentence = [Item(key=f"k{i}", transcript="same words") for i in range(5)]
    tr1, va1 = split_items(one_sentence, 0.2, 64, seed=0)
    assert len(va1) == 1 and len(tr1) == 4  # no group fits: clips are split one by one


def test_missing_and_empty_data_are_clear_errors(tmp_path):
    with pytest.raises(AuraError, match="does not exist"):
        open_source(str(tmp_path / "nope"), DatasetConfig())
    with pytest.raises(AuraError, match="holds no audio files"):
        open_source(str(tmp_path), DatasetConfig())
    (tmp_path / "f.wav").write_bytes(b"")
    with pytest.raises(AuraError, match="is a file"):
        open_source(str(tmp_path / "f.wav"), DatasetConfig())


def test_huggingface_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    paths = [str(wav(tmp_path / "raw" / f"{i}.wav", seed=i)) for i in range(3)]
    ds = datasets.Dataset.from_dict({"speech": paths, "sentence": ["one", "", "three"]})
    ds = ds.cast_column("speech", datasets.Audio(sampling_rate=16000))
    ds.save_to_disk(str(tmp_path / "saved"))
    source, items, report = discover(tmp_path / "saved", audio_column="speech")
    assert source.kind == "hf"
    assert [(it.key, it.transcript) for it in items] == [("train[0]", "one"), ("train[2]", "three")]
    assert report.skipped == [{"item": "train[1]", "reason": "empty transcript in column 'sentence'"}]
    wave = source.load(items[1], AudioConfig())
    expected = sf.read(paths[2], dtype="float32")[0]
    np.testing.assert_allclose(wave, expected, atol=1e-4)


def test_huggingface_dataset_with_array_column_and_no_transcripts(tmp_path):
    datasets = pytest.importorskip("datasets")
    x8k = speech_like(0.5, 3, sr=8000)
    ds = datasets.Dataset.from_dict({"audio": [{"array": x8k.tolist(), "sampling_rate": 8000}]})
    ds.save_to_disk(str(tmp_path / "arr"))
    source, items, report = discover(tmp_path / "arr")
    assert items[0].transcript is None
    wave = source.load(items[0], AudioConfig())
    assert len(wave) == 8000  # resampled 8 kHz -> 16 kHz
    with pytest.raises(AuraError, match="no column 'words'"):
        discover(tmp_path / "arr", text_column="words")

"""Trainer settings: YAML/JSON files, dotted command-line overrides, validation, resume comparisons."""

from __future__ import annotations

import argparse
import json

import pytest

from aura_model.errors import AuraError
from aura_model.train.command import add_arguments, spec_from_args
from aura_model.train.config import (SECTIONS, TrainConfig, TrainSpec, build_spec, field_comments,
                                     spec_differences)


def parse(argv: list[str]) -> TrainSpec:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return spec_from_args(parser.parse_args(argv))


def test_help_of_a_field_documented_above_it_holds_the_whole_comment():
    from aura_model.distill import DistillConfig

    ctc = field_comments(DistillConfig)["w_ctc"]
    assert ctc.startswith("weight of a CTC loss on the audio span") and ctc.endswith("in order")
    assert field_comments(DistillConfig)["w_decode"].startswith("weight of the teacher-decoder term")
    assert field_comments(DistillConfig)["w_kl"].startswith("weight of the response KL")  # a trailing comment


def test_every_field_of_every_section_has_a_flag_with_help():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {s for a in parser._actions for s in a.option_strings}
    for contract in ("--teacher", "--student", "--data", "--output", "--config", "--max-steps", "--resume",
                     "--progress-json"):
        assert contract in flags
    import dataclasses

    for section, cls in SECTIONS.items():
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            assert f"--{section}.{f.name}" in flags
            assert comments.get(f.name), f"{section}.{f.name} has no comment to show as help"


def test_dotted_flags_override_the_file_which_overrides_defaults(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "teacher: t-from-file\nstudent: s\ndata: d\noutput: o\n"
        "train: {lr: 3e-4, batch_size: 4, mixed_precision: no}\n"  # YAML reads 3e-4 as text and `no` as false
        "lora: {r: 4, target_modules: [q_proj, v_proj]}\n"
        "distill: {layer_map: [[1, 2], [2, 4]]}\n"
    )
    spec = parse(["--config", str(cfg), "--teacher", "t-flag", "--train.batch_size", "2", "--distill.w_kl", "0",
                  "--embedding.stack", "2", "--train.deterministic", "yes", "--max-steps", "7"])
    assert spec.teacher == "t-flag" and spec.student == "s"
    assert spec.train.lr == pytest.approx(3e-4) and isinstance(spec.train.lr, float)
    assert spec.train.batch_size == 2  # flag beats file
    assert spec.train.mixed_precision == "no"
    assert spec.train.max_steps == 7 and spec.train.deterministic is True
    assert spec.distill.w_kl == 0.0 and spec.distill.layer_map == ((1, 2), (2, 4))
    assert spec.model.lora.r == 4 and spec.model.lora.target_modules == ("q_proj", "v_proj")
    assert spec.model.embedding.stack == 2
    assert spec.train.epochs == TrainConfig().epochs  # untouched default


def test_json_config_and_list_values_on_the_command_line(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"train": {"seed": 5}, "dataset": {"text_column": "sentence"}}))
    spec = parse(["--config", str(cfg), "--distill.layer_map", "[[1,1]]", "--lora.target_modules", "q_proj,k_proj",
                  "--distill.layer_map", "null"])
    assert spec.train.seed == 5 and spec.dataset.text_column == "sentence"
    assert spec.distill.layer_map is None  # the last flag wins; null = the default map
    assert spec.model.lora.target_modules == ("q_proj", "k_proj")


def test_round_trip_through_to_dict():
    spec = build_spec(None, {"train.lr": "1e-3", "distill.layer_map": "[[1, 3]]"},
                      {"teacher": "a", "student": "b", "data": "c", "output": "d"})
    again = TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


@pytest.mark.parametrize("argv, match", [
    (["--train.lr", "fast"], r"--train.lr: cannot read 'fast' as float"),
    (["--train.deterministic", "maybe"], "expected true or false"),
    (["--train.scheduler", "exponential"], "scheduler must be one of"),
    (["--train.batch_size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--distill.w_layer", "0", "--distill.w_kl", "0"], "at least one of w_layer, w_kl, w_ce"),
    (["--lora.r", "0"], "r must be >= 1, got 0"),
])
def test_bad_values_are_named(argv, match):
    with pytest.raises(AuraError, match=match):
        parse(argv)


def test_unknown_keys_in_files_are_refused(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train: {learning_rate: 1}\n")
    with pytest.raises(AuraError, match=r"unknown field\(s\) \['learning_rate'\]"):
        parse(["--config", str(cfg)])
    cfg.write_text("trian: {lr: 1}\n")
    with pytest.raises(AuraError, match=r"unknown key\(s\) \['trian'\]"):
        parse(["--config", str(cfg)])
    with pytest.raises(AuraError, match="not found"):
        parse(["--config", str(tmp_path / "missing.yaml")])
    cfg.write_text("train: [1, 2\n")
    with pytest.raises(AuraError, match="unreadable"):
        parse(["--config", str(cfg)])


def test_missing_paths_are_named():
    spec = parse(["--teacher", "t"])
    with pytest.raises(AuraError, match="missing --student, --data, --output"):
        spec.check_paths()


def test_resume_differences_ignore_run_length_but_not_the_trajectory():
    paths = {"teacher": "t", "student": "s", "data": "d", "output": "o"}
    a = build_spec(None, {"train.max_steps": "10"}, paths).to_dict()
    b = build_spec(None, {"train.max_steps": "20", "train.checkpoint_every": "5", "train.num_threads": "1"},
                   paths).to_dict()
    assert spec_differences(a, b) == []  # a run may continue on a machine with another number of cores
    c = build_spec(None, {"train.lr": "1e-3", "lora.r": "4"}, paths).to_dict()
    diffs = spec_differences(a, c)
    assert any(d.startswith("train.lr 0.0002 -> 0.001") for d in diffs)
    assert any(d.startswith("lora.r 16 -> 4") for d in diffs)


def test_trainer_entry_point_hides_the_optional_kernel_import_warnings():
    """`python -m aura_model.train` does not pass through `aura`'s quieting: bitsandbytes' import-time warning about
    an optional kernel it could not fetch, and the `kernels` package's offline-mode notice, must not reach the
    training log either; their errors still do."""
    import logging

    from aura_model.backends import NOISY_KERNEL_LOGGERS
    from aura_model.train.command import main

    # the loggers that warn: bitsandbytes.backends.cpu.ops and kernels._internals.hf_hub
    warners = [logging.getLogger("bitsandbytes.backends.cpu.ops"), logging.getLogger("kernels._internals.hf_hub")]
    saved = {name: logging.getLogger(name).level for name in NOISY_KERNEL_LOGGERS}
    try:
        for name in NOISY_KERNEL_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        assert all(w.isEnabledFor(logging.WARNING) for w in warners)
        with pytest.raises(SystemExit):
            main(["--help"])
        assert not any(w.isEnabledFor(logging.WARNING) for w in warners)
        assert all(w.isEnabledFor(logging.ERROR) for w in warners)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

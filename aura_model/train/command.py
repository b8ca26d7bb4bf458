"""`aura train`: the command-line face of :func:`aura_model.train.train`.

``add_arguments(parser)`` adds the contract flags::

    --teacher T --student S --data D --output DIR [--config FILE] [--max-steps N] [--resume] [--progress-json]
    [--stop-file PATH] [--exit-with-parent]

and one ``--<section>.<field> VALUE`` flag per config field (sections audio, embedding, lora,
prompt, distill, train, dataset), generated from the dataclasses, with the field's comment as
help. ``run(args)`` returns the exit status:

    0    finished; the bundle is written
    1    failed (a one-line message on stderr; an ``error`` event with --progress-json)
    2    bad command line (argparse)
    130  stopped by SIGINT after writing a checkpoint (continue with --resume)
    143  stopped by SIGTERM after writing a checkpoint (continue with --resume)

``--stop-file PATH`` stops the run as SIGTERM does (a checkpoint, then 143) once PATH exists: how
the desktop app pauses a run where a process cannot be sent SIGTERM (Windows). A thread checks for
the file twice a second and raises SIGTERM in this process. ``--exit-with-parent`` does the same
when the process that started the trainer ends (it is re-parented; POSIX), so a desktop app that
is killed leaves a checkpoint instead of an orphan; with the reader gone, progress lines are dropped.

A signal that arrives while the caches are being filled (before the first step) stops the run at
the next clip batch with 130/143 and no checkpoint (there is no training state yet): the cache
entries written so far are kept, so running the same command again (without --resume) goes on
from there.

Run it as ``python -m aura_model.train ...``; for several processes/GPUs,
``accelerate launch --num_processes N -m aura_model.train ...`` (on a machine without GPUs add
``--multi_gpu``: that is what makes accelerate start N processes, which then train on the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import traceback

from .. import backends
from ..errors import AuraError
from .config import PATH_KEYS, SECTIONS, build_spec, field_comments, field_types
from .loop import train
from .progress import JsonReporter, Reporter, TqdmReporter

_DEST = "cfg:"  # prefix of the argparse destinations of the dotted flags


def _metavar(tp) -> str:
    text = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return {"bool": "BOOL", "int": "INT", "float": "FLOAT", "str": "TEXT"}.get(text, "VALUE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `aura train` flags to ``parser``."""
    parser.add_argument("--teacher", help="teacher ASR model: hub id or local folder (Whisper, wav2vec2, HuBERT, ...)")
    parser.add_argument("--student", help="base chat LLM: hub id or local folder")
    parser.add_argument("--data", help="folder of audio files (+ .txt or metadata.csv/jsonl transcripts), "
                                       "or a Hugging Face dataset (saved folder or hub name)")
    parser.add_argument("--output", help="the adapter bundle folder to write")
    parser.add_argument("--config", help="YAML or JSON file with any of the settings below (flags override it)")
    parser.add_argument("--max-steps", dest="max_steps", type=int, default=None,
                        help="optimizer steps to run (same as --train.max_steps)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--progress-json", dest="progress_json", action="store_true",
                        help="print progress as JSON lines on stdout (for the GUI) instead of a progress bar")
    parser.add_argument("--stop-file", dest="stop_file", default=None, metavar="PATH",
                        help="stop as SIGTERM does (checkpoint, exit 143) once PATH exists (for the GUI on Windows)")
    parser.add_argument("--exit-with-parent", dest="exit_with_parent", action="store_true",
                        help="stop as SIGTERM does once the process that started this one ends (for the GUI; POSIX)")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} settings ({cls.__name__})")
        comments = field_comments(cls)
        types = field_types(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if isinstance(default, tuple):
                default = ",".join(map(str, default))
            group.add_argument(f"--{section}.{f.name}", dest=f"{_DEST}{section}.{f.name}", default=argparse.SUPPRESS,
                               metavar=_metavar(types[f.name]),
                               help=f"{comments.get(f.name, '')} (default: {default})".replace("%", "%%"))


def spec_from_args(args: argparse.Namespace):
    values = vars(args)
    overrides = {k[len(_DEST):]: v for k, v in values.items() if k.startswith(_DEST)}
    if values.get("max_steps") is not None:
        overrides["train.max_steps"] = str(values["max_steps"])
    paths = {k: values.get(k) for k in PATH_KEYS}
    return build_spec(values.get("config"), overrides, paths, resume=bool(values.get("resume")))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _output_to_devnull() -> None:
    """Point file descriptors 1 and 2 at the null device (what is buffered goes there too)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
    finally:
        os.close(null)


@contextlib.contextmanager
def stop_watch(path: str | None, parent: int | None = None, interval_s: float = 0.5):
    """While the block runs, SIGTERM is raised in this process once ``path`` exists or once the process
    ``parent`` (this one's parent when the block began) is no longer its parent; checked every ``interval_s``."""
    if not path and parent is None:
        yield
        return
    done = threading.Event()

    def orphaned() -> bool:
        return parent is not None and os.getppid() != parent

    def watch() -> None:
        while not done.wait(interval_s):
            gone = orphaned()
            if gone:
                _output_to_devnull()  # the pipes' reader died with the parent: writes would fail mid-checkpoint
            if gone or (path and os.path.exists(path)):
                signal.raise_signal(signal.SIGTERM)  # the handler runs on the main thread, as for a real SIGTERM
                return

    thread = threading.Thread(target=watch, name="aura-stop-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run(args: argparse.Namespace) -> int:
    """Run `aura train` with parsed ``args``; returns the exit status (see the module docstring)."""
    json_mode = bool(getattr(args, "progress_json", False))
    main_process = int(os.environ.get("RANK", "0")) == 0
    reporter: Reporter
    if not main_process:
        reporter = Reporter()
    else:
        reporter = JsonReporter() if json_mode else TqdmReporter()

    def fail(message: str) -> None:
        if json_mode and main_process:
            reporter.event("error", message=message)
        print(f"aura train: error: {message}", file=sys.stderr, flush=True)

    parent = os.getppid() if getattr(args, "exit_with_parent", False) and os.name == "posix" else None
    with reporter.session(), stop_watch(getattr(args, "stop_file", None), parent):
        try:
            spec = spec_from_args(args)
            result = train(spec, reporter)
        except AuraError as exc:
            fail(_one_line(exc))
            return 1
        except KeyboardInterrupt:
            fail("interrupted (no checkpoint written)")
            return 130
        except Exception as exc:  # a bug, not bad input: keep the traceback for the report
            traceback.print_exc(file=sys.stderr)
            fail(f"{type(exc).__name__}: {_one_line(exc)}")
            return 1
        finally:
            reporter.close()
    if result.interrupted and result.checkpoint is not None:
        print(f"aura train: stopped by {result.interrupted}; checkpoint {result.checkpoint}; "
              "run again with --resume to continue", file=sys.stderr, flush=True)
    elif result.interrupted:
        print(f"aura train: stopped by {result.interrupted} before the first step (no checkpoint); the caches filled "
              "so far are kept: run again without --resume to continue", file=sys.stderr, flush=True)
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    # optional kernels that bitsandbytes and transformers look for warn at import; nothing is wrong (see backends)
    backends.quiet_kernel_warnings()
    parser = argparse.ArgumentParser(prog="aura train", description="Distill an ASR teacher into a LoRA-adapted LLM "
                                     "and write an AuRA adapter bundle.")
    add_arguments(parser)
    return run(parser.parse_args(argv))

"""The `aura` command: chat, info, train, eval, demo. The same library calls the GUI makes.

Errors are one line on stderr and a non-zero exit (1 for bad input, 130 on Ctrl-C);
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _runtime_args(p: argparse.ArgumentParser, device_flag: str = "--device") -> None:
    g = p.add_argument_group("runtime")
    g.add_argument(device_flag, dest="device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    g.add_argument("--quantization", default="auto", help="auto | 4bit | 8bit | none (auto: 4-bit on CUDA, none on CPU)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub model's own Python code to run (off unless you trust the model's authors)")


def _generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=None)


def _chosen_command(argv: list[str] | None) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    return words[0] if words else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `aura` parser; the trainer's ~100 flags (which import torch) only when ``argv`` asks for `aura train`."""
    parser = argparse.ArgumentParser(prog="aura", description="AuRA: a local voice assistant whose LLM hears speech directly.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    parser.add_argument("--self-test", action="store_true",
                        help="answer a bundled spoken question with the bundled model, check the install, print one "
                             "line and exit (0 = it works; alone, without a command)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_chat(sub)
    _add_listen(sub)
    _add_info(sub)
    _add_train(sub, argv)
    _add_eval(sub)
    _add_demo(sub)
    return parser


def _add_chat(sub) -> None:
    """`aura chat`: one question by audio file or text."""
    chat = sub.add_parser("chat", help="ask one question by audio file or text; the answer streams to stdout")
    chat.add_argument("--bundle", help="AuRA bundle folder (default: the bundled demo model)")
    chat.add_argument("--base", help="base LLM (hub id or folder); alone: typed chat with the plain base model")
    what = chat.add_mutually_exclusive_group(required=True)
    what.add_argument("--audio", metavar="FILE", help="wav/flac/ogg/mp3 file with the spoken request")
    what.add_argument("--text", metavar="TEXT", help="a typed request")
    chat.add_argument("--prompt", metavar="TEXT", help="text that goes with the audio in the user turn (an instruction)")
    chat.add_argument("--system", metavar="TEXT", default=None, help="system prompt (default: the bundle's)")
    chat.add_argument("--stats", action="store_true", help="print time to first token and tokens/s on stderr")
    _runtime_args(chat)
    _generation_args(chat)


def _add_listen(sub) -> None:
    """`aura listen`: microphone -> voice detection -> answers, no window."""
    listen = sub.add_parser("listen", help="answer what the microphone hears (VAD endpointing, no window); "
                                           "answers stream to stdout")
    listen.add_argument("--bundle", help="AuRA bundle folder (default: the bundled demo model)")
    listen.add_argument("--base", help="base LLM override (hub id or folder) for the bundle")
    listen.add_argument("--device", dest="input", metavar="NAME",
                        help="microphone: index or (part of) its name (default: the system default; see "
                             "--list-devices); the compute device is --compute-device here")
    listen.add_argument("--list-devices", action="store_true", help="print the input devices and exit")
    listen.add_argument("--once", action="store_true", help="stop after answering one utterance")
    listen.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="give up (exit 1) when nothing is heard for this long")
    listen.add_argument("--system", metavar="TEXT", default=None, help="system prompt (default: the bundle's)")
    listen.add_argument("--save-audio", metavar="DIR", help="write each utterance as a wav file here (what the model heard)")
    listen.add_argument("--stats", action="store_true", help="print latency (end of speech to first token) on stderr")
    vad = listen.add_argument_group("voice activity detection")
    vad.add_argument("--aggressiveness", type=int, default=2, help="webrtcvad mode 0..3 (default 2)")
    vad.add_argument("--pre-roll-ms", type=int, default=450, help="audio kept before the onset (default 450)")
    vad.add_argument("--hangover-ms", type=int, default=600, help="silence that ends an utterance (default 600)")
    vad.add_argument("--min-speech-ms", type=int, default=250, help="shorter utterances are dropped (default 250)")
    vad.add_argument("--max-speech-ms", type=int, default=30000, help="longer utterances are cut (default 30000)")
    _runtime_args(listen, device_flag="--compute-device")
    _generation_args(listen)


def _add_info(sub) -> None:
    """`aura info`: what a bundle holds, after the checks loading makes."""
    info = sub.add_parser("info", help="show what a bundle contains")
    info.add_argument("bundle", nargs="?", help="bundle folder (default: the bundled demo model)")
    info.add_argument("--json", action="store_true", help="machine-readable output")


def _add_train(sub, argv: list[str] | None) -> None:
    """`aura train`: its flags come from the trainer, imported only when it is the command."""
    train = sub.add_parser("train", help="distil an AuRA adapter from a teacher ASR encoder into an LLM")
    if _chosen_command(argv) == "train":
        try:
            from aura_model.train.command import add_arguments
        except ImportError:  # the trainer is optional at import time; `aura train` then explains
            train.set_defaults(_train_missing=True)
        else:
            add_arguments(train)


def _add_eval(sub) -> None:
    """`aura eval`: exact-match accuracy over a manifest."""
    ev = sub.add_parser("eval", help="exact-match accuracy and time to first token over a JSONL manifest")
    ev.add_argument("--bundle", help="AuRA bundle folder (default: the bundled demo model)")
    ev.add_argument("--manifest", required=True, metavar="FILE.jsonl",
                    help='one {"audio": path, "answer": ...} (or "text" instead of "audio") per line')
    ev.add_argument("--mode", choices=("aura", "cascade", "text"), default="aura",
                    help="aura: audio -> LLM; cascade: teacher ASR transcript -> LLM; text: true transcript -> LLM")
    ev.add_argument("--max-new-tokens", type=int, default=32)
    _runtime_args(ev)


def _add_demo(sub) -> None:
    """`aura demo`: the demo world's sentences and its build."""
    demo = sub.add_parser("demo", help="the demo world: list its sentences, build it")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True, metavar="DEMO_COMMAND")
    sentences = demo_sub.add_parser("sentences", help="print the domain's requests as JSON lines")
    sentences.add_argument("--split", choices=("train", "valid", "test"), default="train")
    build = demo_sub.add_parser("build", help="build the demo world and its default bundle from scratch (fixed seeds)")
    build.add_argument("--quick", action="store_true", help="small everything (a few minutes); does not ship the bundle")
    build.add_argument("--work", metavar="DIR", help="working folder (default: .cache/demo-build or .cache/demo-quick)")
    build.add_argument("--ship", metavar="DIR", help="where the finished bundle goes (default: assets/default_bundle; "
                                                       "none with --quick)")
    build.add_argument("--no-ship", action="store_true", help="build and evaluate, but do not install the bundle")
    build.add_argument("--fresh", action="store_true", help="start over instead of reusing finished stages")
    build.add_argument("--jobs", type=int, default=2, help="parallel jobs: espeak-ng processes, and the LLM and teacher trained side by side (1: one after the other)")


# ---------------------------------------------------------------------- commands
def _default_bundle_or_error() -> Path:
    from aura_model.errors import AuraError

    from .assets import default_bundle

    bundle = default_bundle()
    if bundle is None:
        raise AuraError("no default model ships with this build yet: pass --bundle DIR (an AuRA bundle) "
                        "or --base MODEL (typed chat with a plain LLM)")
    return bundle


def cmd_chat(args) -> int:
    from aura_model.assistant import Assistant
    from aura_model.config import GenerationSettings, RuntimeConfig

    runtime = RuntimeConfig(device=args.device, quantization=args.quantization)
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             top_p=args.top_p, seed=args.seed)
    bundle = args.bundle
    if bundle is None and args.base is None:
        bundle = _default_bundle_or_error()
    t_load = time.perf_counter()
    assistant = Assistant.open(bundle, args.base, runtime, args.trust_remote_code)
    for notice in assistant.loaded.resolved.notices:
        print(f"aura: {notice}", file=sys.stderr)
    load_s = time.perf_counter() - t_load
    if args.audio is not None:
        audio, text = args.audio, args.prompt
    else:
        audio, text = None, args.text if not args.prompt else f"{args.prompt} {args.text}"
    t0 = time.perf_counter()
    first = None
    n = 0
    for piece in assistant.stream(audio, text, gen, system_prompt=args.system):
        if first is None:
            first = time.perf_counter() - t0
        n += 1
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        total = time.perf_counter() - t0
        ftt = f"{first * 1000:.0f} ms" if first is not None else "n/a (empty answer)"
        print(f"aura: load {load_s:.2f} s, first token {ftt}, {n} pieces in {total:.2f} s", file=sys.stderr)
    return 0


def cmd_listen(args) -> int:
    from aura_model.assistant import Assistant
    from aura_model.config import GenerationSettings, RuntimeConfig

    from .listening import VadConfig, list_input_devices, native_stderr
    from .listening.pipeline import ListenPipeline, exit_soon, leave_now_if_portaudio_is_stuck, save_segment

    if args.list_devices:
        for d in list_input_devices():
            print(f"{d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['default_samplerate']:.0f} Hz)")
        return 0
    runtime = RuntimeConfig(device=args.device, quantization=args.quantization)
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             top_p=args.top_p, seed=args.seed)
    vad = VadConfig(aggressiveness=args.aggressiveness, pre_roll_ms=args.pre_roll_ms, hangover_ms=args.hangover_ms,
                    post_roll_ms=min(150, args.hangover_ms), min_speech_ms=args.min_speech_ms,
                    max_speech_ms=args.max_speech_ms)
    assistant = Assistant.open(args.bundle or _default_bundle_or_error(), args.base, runtime, args.trust_remote_code)
    for notice in assistant.loaded.resolved.notices:
        print(f"aura: {notice}", file=sys.stderr)
    pipeline = ListenPipeline(assistant, device=args.input, vad_config=vad, gen=gen, system_prompt=args.system)
    # PortAudio prints its errors from C; a sound server dying under a stream can make that a flood
    quiet = None if args.debug else native_stderr.install()
    count, interrupted = 0, False
    try:
        pipeline.open()
        print("listening", file=sys.stderr, flush=True)
        waiting_since = time.monotonic()
        while True:
            heard = pipeline.next_segment(timeout_s=0.2)
            _say_device_news(pipeline.device_news())  # the listener retries by itself; say what happened
            if heard is None:
                if args.timeout is not None and time.monotonic() - waiting_since > args.timeout:
                    from aura_model.errors import AuraError

                    raise AuraError(f"nothing was heard within {args.timeout:g} s")
                continue
            count += 1
            if args.save_audio:
                save_segment(args.save_audio, count, heard.segment)
            _print_answer(pipeline.stream_answer(heard), heard, args.stats)
            if args.once:
                return 0
            waiting_since = time.monotonic()
    except KeyboardInterrupt:
        exit_soon(EXIT_INTERRUPTED)  # Ctrl-C always ends the command: a bound on the shutdown below
        interrupted = True
        raise
    finally:
        pipeline.close()
        if quiet is not None:
            quiet.close()
        if interrupted:  # what main() would print; a stuck PortAudio thread could block a normal exit
            leave_now_if_portaudio_is_stuck(EXIT_INTERRUPTED, "aura: interrupted")


def _say_device_news(news) -> None:
    for kind, text in news:
        # one write per line: unbuffered, print() writes the newline apart, and PortAudio's error
        # lines, written to the same stderr from C, could land in between
        sys.stderr.write(f"aura: warning: {text}\n" if kind == "problem" else "aura: the microphone is back: listening\n")
        sys.stderr.flush()


def _print_answer(pieces, heard, stats: bool) -> None:
    """The streamed answer on stdout; with ``stats`` the latency from the end of speech on stderr."""
    from .listening.pipeline import HeardAnswer

    for item in pieces:
        if not isinstance(item, HeardAnswer):
            sys.stdout.write(item)
            sys.stdout.flush()
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        if stats:
            ftt = "n/a (empty answer)" if item.first_token_ms is None else (
                f"{item.first_token_ms:.0f} ms (VAD hang-over {heard.segment.endpoint_delay_s * 1000:.0f}"
                f" ms, model {item.model_first_token_ms:.0f} ms)")
            print(f"aura: heard {heard.segment.duration_s:.1f} s; end of speech to first token {ftt}",
                  file=sys.stderr, flush=True)


def cmd_info(args) -> int:
    from aura_model.bundle import bundle_info

    info = bundle_info(args.bundle or _default_bundle_or_error())
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    fp = info["base"]["fingerprint"]
    emb = info.get("embedding_shape") or {}
    lora = info["model"]["lora"]
    print(f"bundle      {info['bundle']}")
    print(f"base LLM    {info['base']['id']}  (loads from {info['base_source']})")
    print(f"            {fp['model_type']}, {fp['num_hidden_layers']} layers x {fp['hidden_size']} hidden, vocab {fp['vocab_size']}")
    print(f"teacher     {info.get('teacher') or 'unknown'}")
    print(f"audio       {info['model']['audio']['sample_rate']} Hz, {info['model']['audio']['n_mels']} mels, "
          f"stack {emb.get('stack')} -> {100 / 2 / max(1, emb.get('stack', 4)):.1f} audio tokens/s")
    print(f"LoRA        r={lora['r']} alpha={lora['alpha']} on {', '.join(lora['target_modules'])}"
          f"{' + MLP' if lora['include_mlp'] else ''}"
          f"{', layers ' + ','.join(map(str, lora['layers'])) if lora.get('layers') else ', every layer'}")
    pooling = info["model"].get("pooling") or {}
    token_rate = bool(pooling.get("layers"))
    if token_rate:
        print(f"pooling     token-rate: layers 1-{pooling['layers']} hear the clip, integrate-and-fire makes about one "
              f"vector per text token (kernel {pooling.get('kernel')}), the base LLM reads them")
    else:
        print("pooling     none (frame-rate: the audio tokens go straight into the prompt)")
    print(f"trainable   {info['adapter_and_embedding_parameters']:,} parameters "
          f"(adapter + audio embedding{' + pooler' if token_rate else ''})")
    if info.get("metrics"):
        print("metrics     " + ", ".join(f"{k}={v}" for k, v in sorted(info["metrics"].items())))
    print(f"files       {len(info['files'])} files, {info['total_bytes'] / 1e6:.1f} MB; checksums {info['checksums']}")
    for link in info["links_outside"]:
        print(f"note        {link} leads outside the bundle")
    print("check       ok: loads onto its base model (fingerprint, files, finite weights)")
    return 0


def cmd_train(args) -> int:
    if getattr(args, "_train_missing", False):
        from aura_model.errors import AuraError

        raise AuraError("the trainer is not available in this build (aura_model.train failed to import)")
    from aura_model.train.command import run

    return run(args)


def cmd_eval(args) -> int:
    from aura_model.assistant import Assistant
    from aura_model.config import GenerationSettings, RuntimeConfig
    from aura_model.evaluate import IncompleteEvaluation, check_audio_files, evaluate, read_manifest, result_line

    items = read_manifest(args.manifest)  # a bad manifest or a missing clip fails before the model loads
    if args.mode != "text":
        check_audio_files(items)
    assistant = Assistant.open(args.bundle or _default_bundle_or_error(), None,
                               RuntimeConfig(device=args.device, quantization=args.quantization), args.trust_remote_code)
    transcriber = None
    if args.mode == "cascade":
        from aura_model.transcribe import load_transcriber

        transcriber = load_transcriber(assistant.loaded.bundle_dir, assistant.loaded.resolved)

    def show(result) -> None:
        print(result_line(result), flush=True)

    try:
        summary = evaluate(assistant, items, args.mode, transcriber,
                           GenerationSettings(max_new_tokens=args.max_new_tokens), show)
    except IncompleteEvaluation as exc:
        print(json.dumps(exc.summary), flush=True)  # what was scored is not lost
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # Ctrl-C keeps its exit status
        raise
    print(json.dumps(summary), flush=True)
    return 0


def cmd_demo(args) -> int:
    from aura_model.demo.domain import sentences

    if args.demo_command == "sentences":
        for item in sentences(args.split):
            print(json.dumps(item, ensure_ascii=False))
        return 0
    from aura_model.demo.build import build

    from .assets import DEFAULT_BUNDLE_NAME, assets_dir

    root = Path(__file__).resolve().parent.parent
    work = Path(args.work) if args.work else root / ".cache" / ("demo-quick" if args.quick else "demo-build")
    ship_to = None
    if not args.no_ship and (args.ship or not args.quick):
        ship_to = Path(args.ship) if args.ship else assets_dir() / DEFAULT_BUNDLE_NAME
    build(work, quick=args.quick, ship_to=ship_to, jobs=args.jobs, fresh=args.fresh,
          log=lambda line: print(line, file=sys.stderr, flush=True))
    print(work / "report.md")
    return 0


COMMANDS = {"chat": cmd_chat, "listen": cmd_listen, "info": cmd_info, "train": cmd_train, "eval": cmd_eval, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # in a frozen build a spawned child runs its task here, not the CLI
    if "--self-test" in (sys.argv[1:] if argv is None else argv):
        from .self_test import main as self_test

        return self_test()
    args = build_parser(argv).parse_args(argv)
    if not args.debug:
        from aura_model.backends import quiet_libraries

        quiet_libraries()
    from aura_model.errors import AuraError

    try:
        return COMMANDS[args.command](args)
    except AuraError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"aura: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("aura: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unexpected library failure: still one line unless --debug
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"aura: unexpected error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())

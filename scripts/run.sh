#!/usr/bin/env bash
# Set up everything, then start the assistant on the bundled default model:
# the desktop app when there is a display, otherwise the command line on a bundled sample clip.
# AURA_UI=gui|cli forces one; extra arguments go to the program started.
set -euo pipefail
cd "$(dirname "$0")/.."
AURA_EXTRAS=${AURA_EXTRAS:-quant} bash scripts/setup.sh
VENV=${AURA_VENV:-$PWD/.venv}
if [[ ! -f assets/default_bundle/aura_config.json ]]; then
  # A checkout without the demo model: show the whole pipeline on a tiny untrained model.
  echo "run: assets/default_bundle is missing (rebuild it with: aura demo build); running the CLI on a tiny UNTRAINED model" >&2
  exec "$VENV/bin/python" scripts/smoke.py "$@"
fi
ui=${AURA_UI:-}
if [[ -z "$ui" ]]; then
  if [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]]; then ui=gui; else ui=cli; fi
fi
if [[ "$ui" == gui ]]; then
  exec "$VENV/bin/aura-gui" "$@"
fi
sample=${AURA_SAMPLE:-assets/default_bundle/samples/sample_0.wav}
echo "run: no display, so the command line answers a bundled sample ($sample)." >&2
echo "run: talk to it with: .venv/bin/aura listen   (or .venv/bin/aura chat --audio FILE | --text TEXT)" >&2
exec "$VENV/bin/aura" chat --stats "$@" --audio "$sample"

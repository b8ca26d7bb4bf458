#!/usr/bin/env bash
# Set up everything, then start the assistant on the bundled default model.
set -euo pipefail
cd "$(dirname "$0")/.."
AURA_EXTRAS=${AURA_EXTRAS:-quant} bash scripts/setup.sh
VENV=${AURA_VENV:-$PWD/.venv}
if [[ -f assets/default_bundle/aura_config.json ]]; then
  exec "$VENV/bin/aura" chat --stats "$@" --audio "${AURA_SAMPLE:-assets/default_bundle/samples/sample_0.wav}"
fi
# No demo model ships yet: say so, and show the whole pipeline on a tiny untrained model.
echo "run: no default model ships yet; running the CLI on a tiny UNTRAINED model (its answer is noise)" >&2
exec "$VENV/bin/python" scripts/smoke.py "$@"

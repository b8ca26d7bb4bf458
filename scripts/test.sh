#!/usr/bin/env bash
# Set up everything, then run the whole test suite (what CI runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${AURA_VENV:-$PWD/.venv}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QT_QPA_PLATFORM=offscreen
set +e
"$VENV/bin/python" -m pytest -q "$@"
code=$?
set -e
if [[ $code == 5 ]]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit $code

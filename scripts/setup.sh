#!/usr/bin/env bash
# Set up everything AuRA needs on Debian/Ubuntu: system packages, a venv in .venv, the Python packages.
# Idempotent: a second run checks and returns in seconds.
#   AURA_VENV=path        venv location (default: .venv in the checkout)
#   AURA_TORCH_SPEC=spec  torch requirement (default: torch==2.13.0 without CUDA, torch>=2.4 with an NVIDIA driver)
#   AURA_EXTRAS=list      pip extras to install (default: test)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${AURA_VENV:-$ROOT/.venv}
EXTRAS=${AURA_EXTRAS:-test}
PYTHON=${PYTHON:-python3}

# --- system packages --------------------------------------------------------------------------
# audio I/O (PortAudio, libsndfile), the virtual microphone for tests (PulseAudio + ALSA plugin),
# speech synthesis for the demo and tests (espeak-ng, sox), and what Qt needs on X11/Xvfb.
SYSTEM_PACKAGES=(
  libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox xvfb xauth
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1
)
missing=()
# Debian's own python3 needs python3-venv for `python3 -m venv`
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them with:  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# --- Python environment -----------------------------------------------------------------------
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: Python 3.10 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [[ ! -x $VENV/bin/python ]]; then
  echo "setup: creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

stamp=$VENV/.aura-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) extras=$EXTRAS"
if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && "$VENV/bin/python" -c 'import aura_model, app, torch' 2>/dev/null; then
  exit 0  # nothing changed since the last setup
fi

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  # torch first: left to itself, pip would pull a multi-GB CUDA build onto machines that cannot use it.
  if [[ -n ${AURA_TORCH_SPEC:-} ]]; then spec=$AURA_TORCH_SPEC
  elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then spec="torch>=2.4"
  else spec="torch==2.13.0"; fi
  echo "setup: installing $spec"
  "${PIP[@]}" install "$spec"
fi
echo "setup: installing AuRA and its dependencies (extras: $EXTRAS)"
"${PIP[@]}" install -e ".[$EXTRAS]"
echo "$want" > "$stamp"

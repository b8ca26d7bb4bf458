#!/usr/bin/env bash
# Build AuRA's installable app for this OS with PyInstaller (packaging/aura.spec), then prove it works:
#   dist/aura/                     the one-folder app: aura (console) and aura-gui (windowed) + _internal/
#   dist/aura-assistant_<ver>_<arch>.deb   Linux: installs under /opt/aura, launchers on the PATH, a menu entry
#   dist/aura-<ver>-linux-<arch>.tar.gz   Linux: the folder as it is
# and last runs the built `aura --self-test` (the bundled model answers a bundled spoken question).
#   AURA_VENV=path   the environment to build from (default .venv; scripts/setup.sh makes it)
#   --dist DIR       where the results go (default dist);  --no-installers  only the folder;
#   --no-self-test   skip the last step
# packaging/README.md: what goes in, what stays out, the sizes, Windows/macOS/CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AURA_VENV:-$PWD/.venv}
PY=$VENV/bin/python
installers=1 self_test=1 dist=dist
while (($#)); do
  case $1 in
    --dist) dist=$2; shift ;;
    --no-installers) installers=0 ;;
    --no-self-test) self_test=0 ;;
    *) echo "package: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -x $PY ]] || { echo "package: no Python environment at $VENV: run scripts/setup.sh first" >&2; exit 1; }

# PyInstaller: the `packaging` extra of pyproject.toml, installed when missing.
if ! "$PY" -c 'import PyInstaller' 2>/dev/null; then
  reqs=$("$PY" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["packaging"])')
  echo "package: installing $reqs"
  # shellcheck disable=SC2086  # one word per requirement (macOS' bash 3.2 has no mapfile)
  "$PY" -m pip --disable-pip-version-check -q install $reqs
fi

# The build imports torch, transformers and Qt to analyse them: no network, no display.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QT_QPA_PLATFORM=offscreen PYTHONNOUSERSITE=1
start=$SECONDS
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$dist" --workpath build/pyinstaller packaging/aura.spec
echo "package: built $dist/aura in $((SECONDS - start)) s, $(du -sh "$dist/aura" | cut -f1)"

if [[ $installers == 1 && $(uname -s) == Linux ]] && ! command -v dpkg-deb >/dev/null; then
  echo "package: no dpkg-deb (not a Debian-based system): no .deb or .tar.gz" >&2
elif [[ $installers == 1 && $(uname -s) == Linux ]]; then
  start=$SECONDS
  "$PY" packaging/build_deb.py "$dist/aura" --out "$dist"
  echo "package: installers in $((SECONDS - start)) s"
fi
if [[ $self_test == 1 ]]; then
  exe=$dist/aura/aura
  [[ -x $exe ]] || exe=$dist/aura/aura.exe
  env -u HF_HUB_OFFLINE -u TRANSFORMERS_OFFLINE "$exe" --self-test
fi

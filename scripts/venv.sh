# Sourced by ./run, ./test and .ci/run: creates .venv with Python 3.11 and installs cyklo
# (editable) when missing or when pyproject.toml changed since the last install.
python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run, about a minute)…"
  "$python_bin" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
extras=${CYKLO_EXTRAS:-}
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  if ls .venv/.installed* >/dev/null 2>&1; then
    # Most packages are already there: pip's "already satisfied" lines would only be noise.
    echo "updating .venv (pyproject.toml changed or new extras: ${extras:-none})…"
    python -m pip install --quiet -e ".${extras:+[$extras]}"
  else
    # The first install: pip's own lines (one per package, a bar per download), so a minute
    # is not spent in silence.
    python -m pip install -e ".${extras:+[$extras]}"
  fi
  touch "$stamp"
fi

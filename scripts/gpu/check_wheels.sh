#!/usr/bin/env bash
# The GPU bundle's wheels install into a fresh Python 3.12 (the GPU image's Python) the way run.sh installs
# them, beside PyPI's current releases of what they take from the image, and papermill executes a notebook
# on a kernel from them. Run by `make gpu-check-wheels`; needs a python3.12 (PATH or pyenv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY312=${PYTHON312:-}
for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  [ -n "$PY312" ] && break
  "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && PY312=$candidate
done
[ -n "$PY312" ] || { echo "no python3.12 here (PATH or pyenv): set PYTHON312" >&2; exit 2; }
WORK=$(mktemp -d /tmp/minbert-wheels.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
"$PY312" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q -r .gpu/from-image.txt
"$WORK/venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .gpu/wheels/*.whl
cat >"$WORK/hello.ipynb" <<'NB'
{"cells": [{"cell_type": "code", "execution_count": null, "id": "a", "metadata": {"tags": ["parameters"]},
  "outputs": [], "source": ["n = 1"]},
 {"cell_type": "code", "execution_count": null, "id": "b", "metadata": {}, "outputs": [],
  "source": ["import sys, optuna, pydantic, sqlalchemy, alembic, ipywidgets\n",
             "print(sys.version.split()[0], n, optuna.__version__, pydantic.VERSION)"]}],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "nbformat": 4, "nbformat_minor": 5}
NB
PYTHONPATH=$WORK/site "$WORK/venv/bin/python" -c "
import papermill, nbformat
papermill.execute_notebook('$WORK/hello.ipynb', '$WORK/out.ipynb', parameters={'n': 42}, progress_bar=False)
out = nbformat.read('$WORK/out.ipynb', as_version=4).cells[-1].outputs[0]['text']
assert out.split()[0].startswith('3.12') and out.split()[1] == '42', out
print('python 3.12 kernel from the wheels ran a notebook:', out.strip())"

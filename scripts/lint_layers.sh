#!/usr/bin/env bash
# The import contracts in pyproject.toml ([tool.importlinter]: the layering, no cycles), checked with import-linter.
# import-linter (grimp) finds submodules by walking the root package's folder, while the roles
# live in sibling folders (server/ installs as fedsynth.server); so it reads a throw-away view
# laid out as installed, made of symbolic links, in a Python without site hooks (-S) so that
# the editable install's finder does not map the names back.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
view=$(mktemp -d)
trap 'rm -rf "$view"' EXIT
mkdir "$view/fedsynth"
for f in fedsynth/*; do ln -s "$PWD/$f" "$view/fedsynth/"; done
for role in client server common simulations evaluation; do ln -s "$PWD/$role" "$view/fedsynth/$role"; done
cp pyproject.toml "$view/"
site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cd "$view"
PYTHONPATH="$view:$site" "$PY" -S -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"

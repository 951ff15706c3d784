#!/usr/bin/env bash
# Builds and tests the Python binding on a fresh machine (as root, with PyPI and crates.io):
#
#   bash bindings/python/ci.sh [VENV]
#
# (re)creates the virtual environment VENV (default /tmp/shmlane-venv), installs maturin,
# pytest and numpy into it, installs the package (`pip install ./bindings/python`, which builds
# the extension with maturin), builds the Rust peer the tests talk to, and runs pytest.
# Exits non-zero if any step fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-/tmp/shmlane-venv}"
python="${PYTHON:-python3}"
if [ -d "$HOME/.cargo/bin" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

echo "== python binding: virtual environment $venv ($("$python" --version))"
if ! "$python" -m venv --clear "$venv"; then
    # Debian's python3 has no ensurepip without its venv package.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$version-venv" \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        "$python" -m venv --clear "$venv"
    else
        echo "cannot create a virtual environment with $python" >&2
        exit 1
    fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

echo "== python binding: pip install maturin pytest numpy"
"${pip[@]}" install --quiet maturin pytest numpy

echo "== python binding: pip install $here"
"${pip[@]}" install "$here"

echo "== python binding: the Rust peer"
cargo build --quiet --manifest-path "$here/Cargo.toml" -p shmlane-py-peer

echo "== python binding: pytest"
cd "$here"
"$venv/bin/python" -m pytest tests -v -p no:cacheprovider

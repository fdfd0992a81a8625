#!/usr/bin/env bash
# Installs the pinned LiteLLM proxy that tests/gateway.rs runs in front of a loopback stand-in
# into a virtualenv under .cache (gitignored). Idempotent: does nothing when the
# pinned version is already there. Prints the path of the `litellm` executable on stdout; all
# else goes to stderr. Installs Debian's python3-venv with apt-get (as root or via sudo) when the
# `venv` module is missing.
#   scripts/install-litellm.sh            -> e.g. /repo/.cache/litellm-venv/bin/litellm
#   eval: export KEYSWITCH_LITELLM_BIN="$(scripts/install-litellm.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION=1.108.7
venv=.cache/litellm-venv
py="$venv/bin/python"
bin="$PWD/$venv/bin/litellm"

installed_version() {
    [ -x "$py" ] && [ -x "$bin" ] || return 1
    "$py" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null
}

if [ "$(installed_version || true)" = "$LITELLM_VERSION" ]; then
    echo "$bin"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    need=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need=(python3-venv)
else
    need=()
fi
if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-litellm.sh: missing ${need[*]}: install them with your package manager" >&2
        exit 1
    fi
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "install-litellm.sh: installing ${need[*]} (apt-get)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "install-litellm.sh: installing litellm[proxy]==$LITELLM_VERSION into $venv" >&2
# A half-made or other-version venv is rebuilt from scratch, so nothing stale stays in it.
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
"$py" -m pip install --quiet --disable-pip-version-check --no-input "litellm[proxy]==$LITELLM_VERSION" >&2
if [ "$(installed_version || true)" != "$LITELLM_VERSION" ]; then
    echo "install-litellm.sh: litellm $LITELLM_VERSION did not install into $venv" >&2
    exit 1
fi
echo "$bin"

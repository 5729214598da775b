#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs the format check, clippy, the
# docs (rustdoc warnings are errors), a release build and every test of the workspace (unit,
# property and end-to-end tests).
#
# Works on a fresh Debian machine that has the Rust toolchain, gcc, python3 and apt. Run from
# anywhere; it works in the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- Test dependencies ---------------------------------------------------------------------
# The interoperability test drives the server with simplefix, a third-party FIX engine from
# PyPI. Install it only when the python3 the tests will run cannot import it yet.
SIMPLEFIX_VERSION=1.0.17
if ! python3 -c 'import simplefix' >/dev/null 2>&1; then
    step "installing simplefix ${SIMPLEFIX_VERSION} (PyPI) for the interop test"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        # Debian's python3 comes without pip.
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
    fi
    # A Debian system python refuses pip installs (PEP 668) unless told otherwise; a pyenv or
    # venv python takes the plain install.
    python3 -m pip install --quiet --disable-pip-version-check "simplefix==${SIMPLEFIX_VERSION}" 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "simplefix==${SIMPLEFIX_VERSION}"
    python3 -c 'import simplefix'
fi

# The WebSocket API interoperability test drives the server with binance-connector, the
# official Binance connector for Python (PyPI), used unmodified.
BINANCE_CONNECTOR_VERSION=3.13.0
if ! python3 -c 'import binance.websocket.spot.websocket_api' >/dev/null 2>&1; then
    step "installing binance-connector ${BINANCE_CONNECTOR_VERSION} (PyPI) for the WebSocket interop test"
    python3 -m pip install --quiet --disable-pip-version-check "binance-connector==${BINANCE_CONNECTOR_VERSION}" 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "binance-connector==${BINANCE_CONNECTOR_VERSION}"
    python3 -c 'import binance.websocket.spot.websocket_api'
fi

# The metrics end-to-end test parses /metrics with prometheus_client, the official Prometheus
# client for Python (PyPI), whose parser is the reference for the text exposition format.
PROMETHEUS_CLIENT_VERSION=0.26.0
if ! python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
    step "installing prometheus_client ${PROMETHEUS_CLIENT_VERSION} (PyPI) for the metrics test"
    python3 -m pip install --quiet --disable-pip-version-check "prometheus_client==${PROMETHEUS_CLIENT_VERSION}" 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "prometheus_client==${PROMETHEUS_CLIENT_VERSION}"
    python3 -c 'import prometheus_client.parser'
fi

# The admin API and OAuth end-to-end tests use standard third-party clients from PyPI: authlib
# (OAuth 2.0 client: client credentials, refresh, revocation, introspection) over requests,
# PyJWT with cryptography (verifies access tokens against the JWKS), and pyotp (computes the
# operators' TOTP codes, so the tests never use the project's own TOTP code). The WebSocket
# part of that test uses websocket-client, installed with binance-connector above.
OAUTH_TEST_PACKAGES=(
    "authlib==1.6.5"
    "requests==2.34.2"
    "pyjwt[crypto]==2.10.1"
    "cryptography==48.0.0"
    "pyotp==2.9.0"
)
if ! python3 -c 'import authlib, requests, jwt, cryptography, pyotp, websocket' >/dev/null 2>&1; then
    step "installing ${OAUTH_TEST_PACKAGES[*]} (PyPI) for the admin API and OAuth tests"
    python3 -m pip install --quiet --disable-pip-version-check "${OAUTH_TEST_PACKAGES[@]}" 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "${OAUTH_TEST_PACKAGES[@]}"
    python3 -c 'import authlib, requests, jwt, cryptography, pyotp, websocket'
fi

# rustfmt and clippy ship with the usual toolchain; add them only if this one lacks them.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    step "adding rustfmt and clippy to the toolchain"
    rustup component add rustfmt clippy
fi

# --- Checks --------------------------------------------------------------------------------
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Every public item is documented (missing_docs in each library) and no doc link is broken.
step "cargo doc --workspace --no-deps (rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo build --release"
cargo build --release

# The end-to-end tests start this binary (the one `cargo run --release -- serve` runs). The
# tests themselves build in the debug profile, so overflow checks and debug assertions are on
# while the property tests feed arbitrary bytes to the codec and the session.
PORTCULLIS_BIN="$(pwd)/target/release/portcullis"
export PORTCULLIS_BIN

step "cargo test --workspace (PORTCULLIS_BIN=${PORTCULLIS_BIN})"
cargo test --workspace

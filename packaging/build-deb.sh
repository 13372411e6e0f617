#!/usr/bin/env bash
# Builds the ferry Debian package: release binaries, ferryctl's man pages
# and completions, then cargo-deb (cargo install cargo-deb --locked).
# The package lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p ferry-daemon --bins
rm -rf target/release/ferry-docs
target/release/ferryctl generate-docs --out target/release/ferry-docs
cargo deb -p ferry-daemon --no-build "$@"

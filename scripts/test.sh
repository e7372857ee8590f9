#!/usr/bin/env bash
# Set up everything on a fresh machine and run the whole test suite:
# Rust unit and integration tests (real models), then the client tests (boto3, openai,
# and the AWS SDK for JavaScript v3).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_system_packages
install_python_clients
install_js_clients
install_claude_code
build_release
fetch_models
cd "$REPO"
log "cargo test (release profile: the engines are too slow unoptimised)"
cargo test --release --locked --workspace
log "client tests (boto3, openai, AWS SDK for JavaScript) against a real server"
"$VENV/bin/python" -m pytest tests/clients -q -p no:cacheprovider

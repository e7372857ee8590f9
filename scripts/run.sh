#!/usr/bin/env bash
# Set up everything on a fresh machine and start the server on its embedded
# defaults (SQLite, local models). Extra arguments go to `basalt serve`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_system_packages
build_release
fetch_models
log "starting basalt serve"
exec "$BASALT_BIN" serve --models-dir "$BASALT_MODELS_DIR" "$@"

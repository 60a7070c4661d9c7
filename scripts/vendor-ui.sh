#!/usr/bin/env bash
# Copies the browser build of socket.io-client (the version locked in tests/clients) into the
# dashboard's coordinator/ui/vendor/, with a header naming its package and version.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tests/clients >/dev/null
pkg=tests/clients/node_modules/socket.io-client
version=$(node -p "require('./$pkg/package.json').version")
out=coordinator/ui/vendor/socket.io.esm.min.js
{
  echo "// npm package socket.io-client $version, file dist/socket.io.esm.min.js (MIT, see LICENSES.md)."
  echo "// Update: scripts/vendor-ui.sh"
  grep -v sourceMappingURL "$pkg/dist/socket.io.esm.min.js"
} >"$out"
echo "wrote $out (socket.io-client $version); update the version in coordinator/ui/vendor/LICENSES.md"

#!/usr/bin/env bash
# The JupyterLab panel. npm (to build the labextension from labextension/) and Chromium (tests/browser) from Debian,
# installed only when missing; then the prebuilt labextension, when the editable install could not build it (on a
# fresh machine npm arrives here, after .ci/setup's pip install): built with jupyter-builder (PyPI) and
# @jupyter/builder (npm) and installed into .venv by installing dsenv again. The build runs on the Node.js that
# labextension/'s devDependencies bring from the npm registry (@jupyter/builder's rspack needs Node.js >= 20.19;
# Debian 12 has 18), so any npm will do. A build that fails fails the setup. Idempotent; starts nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Playwright's own Node.js driver (in its wheel) links libatomic, which a minimal Debian lacks
ldconfig -p 2>/dev/null | grep -q 'libatomic\.so\.1' || need+=(libatomic1)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} for the JupyterLab panel and its browser tests" >&2
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
built=dsenv/labserver/labextension/package.json
installed=.venv/share/jupyter/labextensions/dsenv/package.json
[ -x .venv/bin/pip ] || exit 0
if [ ! -f "$built" ] || [ -n "$(find labextension/src labextension/style labextension/package.json -newer "$built" 2>/dev/null)" ]; then
  echo "setup: building the JupyterLab labextension (labextension/ -> dsenv/labserver/labextension)" >&2
  if ! (cd labextension && export PATH="$PWD/../.venv/bin:$PATH" &&
        npm install --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build >/dev/null); then
    echo "setup: the labextension did not build (see above): fix labextension/ or the npm registry's reach" >&2
    exit 1
  fi
fi
if [ -f "$built" ] && ! cmp -s "$built" "$installed"; then
  echo "setup: installing the built labextension into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
fi

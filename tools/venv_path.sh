#!/usr/bin/env bash
# Print the default venv location: a cache directory keyed by the hash of the pinned requirements,
# so that every clone (and every CI run) on a machine shares one environment per pin set.
here="$(cd "$(dirname "$0")/.." && pwd)"
h="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
echo "${XDG_CACHE_HOME:-$HOME/.cache}/cometa/venv-$h"

#!/usr/bin/env bash
# Build the test image sentinel-test/leaker:latest from leaker/leaker.c, leaker/pause.c and
# leaker/Dockerfile, only when it is missing or its sources changed: the image carries the
# sources' content hash in the label sentinel.test.source-hash. Needs a running Docker
# daemon (scripts/docker-up) and no network (FROM scratch). Installs gcc and a static libc when missing (as root).
# Prints the image id on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
image="${SENTINEL_LEAKER_IMAGE:-sentinel-test/leaker:latest}"
label=sentinel.test.source-hash
say() { echo "build.sh: $*" >&2; }

hash="$(cat "$here/build.sh" "$here/leaker/leaker.c" "$here/leaker/pause.c" "$here/leaker/Dockerfile" \
  | sha256sum | cut -c1-32)"
have="$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" \
  2>/dev/null || true)"
if [ "$have" = "$hash" ]; then
  say "$image is up to date ($label=$hash)"
  docker image inspect --format '{{.Id}}' "$image"
  exit 0
fi

# gcc prints the bare name back when it has no such file: no static libc.
if ! command -v gcc >/dev/null || [ "$(gcc -print-file-name=libc.a)" = libc.a ]; then
  say "installing gcc and libc6-dev (static libc)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }
fi

old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
gcc -static -O2 -Wall -Wextra -Werror -o "$ctx/leaker" "$here/leaker/leaker.c"
gcc -static -O2 -Wall -Wextra -Werror -o "$ctx/pause" "$here/leaker/pause.c"
strip "$ctx/leaker" "$ctx/pause" 2>/dev/null || true
cp "$here/leaker/Dockerfile" "$ctx/Dockerfile"
# The legacy builder: it ships with every engine; BuildKit needs the buildx plugin.
DOCKER_BUILDKIT=0 docker build --quiet --label "$label=$hash" --tag "$image" "$ctx" >&2
say "built $image ($label=$hash)"
# The image this one replaced is left untagged: remove it, unless a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$image")" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || say "kept the previous image $old_id (in use)"
fi
docker image inspect --format '{{.Id}}' "$image"

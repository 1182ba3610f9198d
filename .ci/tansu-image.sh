#!/usr/bin/env bash
# Builds a local Docker image of the tansu broker from the installed binary, without pulling
# anything: a root filesystem with the binary and the shared libraries it links, `docker import`ed.
# Rebuilt only when the binary changes (its sha256 is kept as a label).
#
#   .ci/tansu-image.sh [IMAGE]      default IMAGE: casestudies/tansu:0.6.0
set -euo pipefail

image=${1:-casestudies/tansu:0.6.0}
bin=${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
sha=$(sha256sum "$bin" | cut -d' ' -f1)

if [ "$(docker image inspect -f '{{ index .Config.Labels "tansu.sha256" }}' "$image" 2>/dev/null)" = "$sha" ]; then
  echo "image $image is up to date"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"
cp "$bin" "$root/tansu"
# The dynamic loader and every library the binary links, at the same paths.
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do cp --parents -L "$lib" "$root"; done
tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/tansu"]' \
  --change "LABEL tansu.sha256=$sha" \
  --change 'ENV RUST_LOG=warn' \
  - "$image" >/dev/null
echo "built $image from $bin"

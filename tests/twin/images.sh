#!/usr/bin/env bash
# Builds the cloud twin's two images, once per machine (tests/twin/README.md):
#   cm-twin/instance:<key>  the "AMI": Debian bookworm with systemd (packaging/rootfs.sh), curl,
#                           python3, the AWS CLI, /etc/ecs, a stand-in for cloud-init that
#                           runs the launch template's user-data once, on first boot, and one
#                           for amazon-efs-utils' mount helper (ami/mount.efs, with bindfs);
#   cm-twin/game:<key>      the "game": the same root filesystem running tests/twin/game.py.
# Prints the two image names. Needs root and a running dockerd.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '[twin-images] %s\n' "$*" >&2; }

# Twins in parallel (test workers) call this at once: one builds, the others wait for it.
mkdir -p /run/cm-twin
exec 9>/run/cm-twin/images.lock
flock 9

TARBALL=$(packaging/rootfs.sh)
# Each instance has its own dockerd on this machine (twin.py InstanceDocker), whose socket is
# owned by this machine's docker group (`dockerd --group docker`). The agent runs as its own user
# with SupplementaryGroups=docker (the packaged unit), so the AMI's docker group has that group's
# id, as the ECS-optimized AMI's docker group owns its own socket.
DOCKER_GID=$(getent group docker | cut -d: -f3)
# Bump RECIPE when the build steps below change; the files it copies are hashed.
RECIPE=3
key=$( (echo "$RECIPE"; echo "$DOCKER_GID"; cat tests/twin/ami/*) | sha256sum | cut -c1-12)-$(stat -c %s "$TARBALL")
INSTANCE=cm-twin/instance:$key
GAME=cm-twin/game:$(cat tests/twin/game.py | sha256sum | cut -c1-12)-$key

if ! docker image inspect "$INSTANCE" >/dev/null 2>&1; then
  log "building $INSTANCE (first time on this machine: about 2 minutes)"
  base=cm-twin/base:$key
  docker image inspect "$base" >/dev/null 2>&1 || docker import "$TARBALL" "$base" >/dev/null
  wheels=$(mktemp -d)
  name=cm-twin-build-$$
  trap 'rm -rf "$wheels"; docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
  # The AWS CLI as wheels fetched by this machine's pip (the container has no CA for the
  # registry), installed offline inside. Debian bookworm's python3 is 3.11, like ours.
  tests/.venv/bin/pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform any -d "$wheels" awscli >&2
  cp tests/twin/ami/* "$wheels/"
  docker run --name "$name" --network host -v "$wheels:/build:ro" -e DOCKER_GID="$DOCKER_GID" "$base" /bin/bash -euc '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv iproute2 procps bindfs >/dev/null
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
    python3 -m venv /opt/aws-cli
    /opt/aws-cli/bin/pip install -q --no-index --find-links /build awscli
    ln -sf /opt/aws-cli/bin/aws /usr/local/bin/aws
    mkdir -p /etc/ecs /var/lib/cloud/instance /usr/local/lib/cm-twin
    if [ "$DOCKER_GID" != 0 ]; then groupadd --system --gid "$DOCKER_GID" docker; fi
    install -m 0755 /build/boot /usr/local/lib/cm-twin/boot
    install -m 0755 /build/run-user-data /usr/local/lib/cm-twin/run-user-data
    install -m 0755 /build/mount.efs /sbin/mount.efs
    install -m 0644 /build/cloud-final.service /etc/systemd/system/cloud-final.service
    ln -sf /etc/systemd/system/cloud-final.service /etc/systemd/system/multi-user.target.wants/cloud-final.service
    # What a container has no use for, and what would slow the boot down.
    systemctl mask systemd-resolved.service systemd-networkd.service getty@tty1.service \
      console-getty.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
      e2scrub_all.timer fstrim.timer 2>/dev/null || true
    mkdir -p /var/log/journal
  ' >&2
  docker commit -c 'ENTRYPOINT ["/usr/local/lib/cm-twin/boot"]' -c 'CMD []' "$name" "$INSTANCE" >/dev/null
  docker rm -f "$name" >/dev/null
fi

if ! docker image inspect "$GAME" >/dev/null 2>&1; then
  log "building $GAME"
  name=cm-twin-game-build-$$
  docker create --name "$name" --entrypoint /bin/true "$INSTANCE" >/dev/null
  docker cp tests/twin/game.py "$name:/usr/local/bin/game.py"
  docker commit -c 'ENTRYPOINT ["/usr/bin/python3", "-u", "/usr/local/bin/game.py"]' -c 'CMD []' "$name" "$GAME" >/dev/null
  docker rm -f "$name" >/dev/null
fi
# Older builds (another recipe, game or root filesystem) are of no use any more.
# (Only these three: a baked "AMI", cm-twin/ami-baked, belongs to the twin that made it.)
for repo in cm-twin/base cm-twin/instance cm-twin/game; do
  docker images --format '{{.Repository}}:{{.Tag}}' "$repo" | while read -r old; do
    case $old in "$INSTANCE" | "$GAME" | "cm-twin/base:$key") ;; *) docker rmi "$old" >/dev/null 2>&1 || true ;; esac
  done
done
echo "$INSTANCE"
echo "$GAME"

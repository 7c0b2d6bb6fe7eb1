#!/usr/bin/env bash
# Build the Debian package of Linli from a built binary, with dpkg-deb only (no cargo-deb):
#
#   deploy/debian/build-deb.sh [BINARY] [OUTPUT_DIR]
#
#   BINARY      default ${CARGO_TARGET_DIR:-target}/release/linli (cargo build --release)
#   OUTPUT_DIR  default ${CARGO_TARGET_DIR:-target}/debian
#
# Writes OUTPUT_DIR/linli_<version>-<revision>_<arch>.deb and prints its path. The package
# installs:
#   /usr/bin/linli
#   /etc/linli/linli.toml            conffile: `linli config default` with data_dir = /var/lib/linli
#                                    and listen = 127.0.0.1:8080 (root:linli 0640, it will hold
#                                    the master key or database password)
#   /lib/systemd/system/linli.service, linli@.service
#   /usr/share/doc/linli/            the deploy/ README and examples (HAProxy, Mosquitto,
#                                    per-instance environment files)
# and its postinst creates the system user and group `linli` and /var/lib/linli (linli:linli
# 0750). Services are neither enabled nor started: choose SQLite or PostgreSQL in linli.toml
# first, then `systemctl enable --now linli` (or linli@a linli@b linli@c).
#
# Environment: LINLI_DEB_VERSION (default: `linli --version`), LINLI_DEB_REVISION (default 1),
# LINLI_DEB_ARCH (default: dpkg --print-architecture), LINLI_DEB_MAINTAINER, LINLI_DEB_STRIP
# (1 = strip debug symbols, the default; 0 = keep them), SOURCE_DATE_EPOCH (file times; default:
# the last commit's time).
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY=$(cd "$HERE/.." && pwd)
REPO=$(cd "$DEPLOY/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BIN=${1:-$TARGET/release/linli}
OUT=${2:-$TARGET/debian}

die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
[ -x "$BIN" ] || die "no executable at $BIN: build it with cargo build --release, or pass its path"

version=${LINLI_DEB_VERSION:-$("$BIN" --version 2>/dev/null | awk '{print $NF; exit}')}
[ -n "$version" ] || die "could not read the version from $BIN --version; set LINLI_DEB_VERSION"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "not a Debian upstream version: $version"
revision=${LINLI_DEB_REVISION:-1}
arch=${LINLI_DEB_ARCH:-$(dpkg --print-architecture)}
maintainer=${LINLI_DEB_MAINTAINER:-Linli developers <dev@linli.local>}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
full="${version}-${revision}"
deb="$OUT/linli_${full}_${arch}.deb"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/linli_${full}_${arch}"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/etc/linli" "$root/lib/systemd/system" \
  "$root/usr/share/doc/linli/examples"

# The binary.
install -m 0755 "$BIN" "$root/usr/bin/linli"
if [ "${LINLI_DEB_STRIP:-1}" = 1 ] && command -v strip >/dev/null; then
  strip --strip-debug --remove-section=.comment "$root/usr/bin/linli"
fi

# The configuration: the commented defaults, with the packaged paths.
"$BIN" config default >"$work/default.toml" || die "$BIN config default failed"
sed -e 's|^data_dir = .*|data_dir = "/var/lib/linli"|' \
  -e 's|^listen = .*|listen = "127.0.0.1:8080"|' "$work/default.toml" >"$work/linli.toml"
[ "$(grep -c '^data_dir = "/var/lib/linli"$' "$work/linli.toml")" = 1 ] ||
  die "linli config default has no single 'data_dir = ' line to set"
[ "$(grep -c '^listen = "127.0.0.1:8080"$' "$work/linli.toml")" = 1 ] ||
  die "linli config default has no single 'listen = ' line to set"
{
  echo "# /etc/linli/linli.toml — installed by the linli package (a conffile: your changes are"
  echo "# kept on upgrades). Read by linli.service and every linli@<name>.service; per-instance"
  echo "# settings (LINLI_LISTEN, LINLI_INSTANCE_ID) go into /etc/linli/<name>.env."
  echo "# See /usr/share/doc/linli/deploy/README.md."
  echo "#"
  cat "$work/linli.toml"
} >"$root/etc/linli/linli.toml"
chmod 0640 "$root/etc/linli/linli.toml"
# Still valid TOML after the edits.
if python3 -c 'import tomllib' 2>/dev/null; then
  python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$root/etc/linli/linli.toml" ||
    die "the generated linli.toml does not parse"
fi

# systemd units.
install -m 0644 "$DEPLOY/systemd/linli.service" "$DEPLOY/systemd/linli@.service" \
  "$root/lib/systemd/system/"

# Documentation and examples.
doc="$root/usr/share/doc/linli"
mkdir -p "$doc/deploy"
install -m 0644 "$DEPLOY/README.md" "$doc/deploy/README.md"
install -m 0644 "$DEPLOY/haproxy/haproxy.cfg" "$doc/examples/haproxy.cfg"
install -m 0644 "$DEPLOY/mosquitto/mosquitto.conf" "$doc/examples/mosquitto.conf"
for i in a:8081 b:8082 c:8083; do
  printf '# /etc/linli/%s.env: instance %s of linli@.service (the rest is in linli.toml)\nLINLI_LISTEN=127.0.0.1:%s\n' \
    "${i%%:*}" "${i%%:*}" "${i#*:}" >"$doc/examples/${i%%:*}.env"
done
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: linli

Files: *
Copyright: the Linli developers
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
printf 'linli (%s) unstable; urgency=medium\n\n  * Built by deploy/debian/build-deb.sh.\n\n -- %s  %s\n' \
  "$full" "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n >"$doc/changelog.Debian.gz"

# Maintainer scripts and metadata.
install -m 0755 "$HERE/postinst" "$HERE/prerm" "$HERE/postrm" "$root/DEBIAN/"
echo /etc/linli/linli.toml >"$root/DEBIAN/conffiles"

# Dependencies of the binary: dpkg-shlibdeps when available, else the glibc version it needs.
depends=""
if command -v dpkg-shlibdeps >/dev/null; then
  mkdir -p "$work/shlibs/debian"
  printf 'Source: linli\n\nPackage: linli\nArchitecture: any\n' >"$work/shlibs/debian/control"
  depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e "$root/usr/bin/linli" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p') || depends=""
fi
if [ -z "$depends" ]; then
  glibc=$(objdump -T "$root/usr/bin/linli" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' |
    sed 's/GLIBC_//' | sort -uV | tail -n1)
  depends="libc6 (>= ${glibc:-2.31})"
fi
installed=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: linli
Version: $full
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed
Depends: adduser, $depends
Suggests: postgresql, haproxy, mosquitto
Section: web
Priority: optional
Description: smart-community governance and service platform
 Linli (邻里) is one place where residents, the residents' committee, the
 property company, grid workers, the street office and city departments work
 on one record, entered once: the household registry, reports and repairs,
 IoT alarms and SOS, gates and visitor passes, notifications, Open311.
 .
 One binary on an embedded database (SQLite) or, for a city, on PostgreSQL
 with several instances behind a load balancer. This package installs the
 binary, systemd units (linli.service, linli@.service), the configuration
 /etc/linli/linli.toml and the system user linli with /var/lib/linli.
EOF

( cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print0 |
  sort -z | xargs -0 md5sum | sed 's|  \./|  |' >DEBIAN/md5sums )

# Same times on every file, for a reproducible package.
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"

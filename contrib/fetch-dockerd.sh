#!/usr/bin/env bash
# Unpack the dockerd, docker-proxy, docker-init and docker CLI of another
# Debian suite's docker.io into DEST/<upstream version>/, for the end-to-end
# matrix (see testbed/matrix.py). Usage: fetch-dockerd.sh SUITE DEST
#
# The machine's apt stays untouched: the suite goes into a temporary sources
# list, with apt's state, cache and preferences in a temporary directory.
# The mirror is the one this machine's own apt sources name, read at run time
# by contrib/apt-mirror.sh (DEBIAN_MIRROR overrides it), so no mirror host is
# written anywhere in the project.
set -euo pipefail

suite=${1:?usage: fetch-dockerd.sh SUITE DEST}
dest=${2:?usage: fetch-dockerd.sh SUITE DEST}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

uri=$("$(dirname "$0")/apt-mirror.sh")
[ -r "$keyring" ] || { echo "fetch-dockerd: $keyring missing: apt-get install debian-archive-keyring" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/prefs" "$tmp/debs"
: >"$tmp/status"
echo "deb [signed-by=$keyring] $uri $suite main" >"$tmp/sources.list"
apt=(-o "Dir::State=$tmp" -o "Dir::State::Lists=$tmp/lists" -o "Dir::State::status=$tmp/status"
     -o "Dir::Cache=$tmp/cache" -o "Dir::Etc::SourceList=$tmp/sources.list"
     -o "Dir::Etc::SourceParts=$tmp/parts" -o "Dir::Etc::PreferencesParts=$tmp/prefs"
     -o "Dir::Etc::Preferences=$tmp/prefs/none" -o "Acquire::Languages=none"
     -o "APT::Sandbox::User=root")
apt-get "${apt[@]}" -qq update

full=$(apt-cache "${apt[@]}" show --no-all-versions docker.io | sed -n 's/^Version: //p')
# 28.5.2+dfsg4-5 -> 28.5.2: the upstream release, which names the folder.
version=${full#*:}
version=${version%%[+~-]*}
case $version in
    29.0.[012])
        # A missing lock there can crash dockerd with any remote driver.
        echo "fetch-dockerd: $suite has docker.io $version (29.0.0-29.0.2 crash with remote drivers)" >&2
        exit 1 ;;
esac
if [ -x "$dest/$version/usr/sbin/dockerd" ]; then
    echo "$dest/$version (docker.io $full from $suite) is already unpacked"
    exit 0
fi

# docker.io's docker-init is a symlink to /usr/bin/tini-static, which comes
# from the package `tini` in trixie and `tini-static` in sid: whichever of
# the two docker.io depends on.
tini=$(apt-cache "${apt[@]}" show --no-all-versions docker.io |
       sed -n 's/^Depends: //p' | tr ',' '\n' | grep -oE '^ *tini(-static)?\b' | tr -d ' ' | sed -n 1p)
(cd "$tmp/debs" && apt-get "${apt[@]}" -qq download docker.io docker-cli "${tini:?docker.io depends on no tini}")
mkdir -p "$dest"
rm -rf "$dest/$version.partial"
for deb in "$tmp"/debs/*.deb; do
    dpkg -x "$deb" "$dest/$version.partial"
done
printf 'suite=%s\npackage=%s\n' "$suite" "$full" >"$dest/$version.partial/SOURCE"
# Renamed only when complete, so an interrupted run is never taken for a
# usable tree.
mv "$dest/$version.partial" "$dest/$version"
echo "$dest/$version: docker.io $full from $suite"

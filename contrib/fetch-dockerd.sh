#!/usr/bin/env bash
# Unpack the dockerd, docker-proxy, docker-init and docker CLI of another
# Debian suite's docker.io into DEST/<upstream version>/, for the end-to-end
# matrix (see tests/e2e/matrix.py). Usage: fetch-dockerd.sh SUITE DEST
#
# The machine's apt stays untouched: the suite goes into a temporary sources
# list, with apt's state, cache and preferences in a temporary directory.
# The mirror is the one this machine's own apt sources name, read here at run
# time, so no mirror host is written anywhere in the project.
set -euo pipefail

suite=${1:?usage: fetch-dockerd.sh SUITE DEST}
dest=${2:?usage: fetch-dockerd.sh SUITE DEST}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# The URI that serves this machine's own release (not its security suite).
mirror_uri() {
    local codename
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    shopt -s nullglob
    # deb822 stanzas (a blank line or a new file ends one) whose Suites
    # include the codename itself; /dev/null keeps awk off stdin.
    awk -v want="$codename" '
        FNR == 1 || /^[[:space:]]*$/ { if (uri && hit) print uri; uri = ""; hit = 0 }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
        END { if (uri && hit) print uri }
    ' /etc/apt/sources.list.d/*.sources /dev/null
    # One-line format: deb [options] URI SUITE COMPONENTS...
    local lists=(/etc/apt/sources.list.d/*.list)
    [ -r /etc/apt/sources.list ] && lists+=(/etc/apt/sources.list)
    awk -v want="$codename" '
        $1 == "deb" { sub(/\[[^]]*\][[:space:]]*/, ""); if ($3 == want) print $2 }
    ' "${lists[@]}" /dev/null
}

uri=$(mirror_uri | sed -n 1p)
if [ -z "$uri" ]; then
    echo "fetch-dockerd: no Debian mirror for this release in /etc/apt/sources.list{,.d}" >&2
    exit 1
fi
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

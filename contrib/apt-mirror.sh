#!/usr/bin/env bash
# Print the Debian mirror this machine's apt uses, read at run time so that
# the project names no mirror host of its own. contrib/build-rootfs.sh and
# contrib/fetch-dockerd.sh both take their mirror from here.
#
# The mirror is the URI of the first apt source, in apt's reading order, of
# type deb whose suites include the release's codename and whose components
# include main. That passes over the -security and -updates suites (often
# another host or path) and third-party repositories, which name other
# suites or components.
#
# usage: contrib/apt-mirror.sh [CODENAME]
#   CODENAME defaults to this machine's release (/etc/os-release).
# env:   DEBIAN_MIRROR     printed as it is, when set: the override
#        APT_SOURCES_ROOT  where sources.list and sources.list.d/ are
#                          (default /etc/apt; the unit tests use their own)
set -euo pipefail

if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    exit 0
fi
root=${APT_SOURCES_ROOT:-/etc/apt}
# shellcheck source=/dev/null
codename=${1:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
[ -n "$codename" ] || { echo "apt-mirror: no VERSION_CODENAME in /etc/os-release; set DEBIAN_MIRROR" >&2; exit 1; }

# apt reads sources.list, then sources.list.d/ in name order, where only
# *.list (one-line format) and *.sources (deb822) count.
shopt -s nullglob
files=()
if [ -e "$root/sources.list" ]; then files+=("$root/sources.list"); fi
files+=("$root"/sources.list.d/*)

# Every matching URI, in order; the first one wins. /dev/null keeps awk off
# stdin when there are no files.
uri=$(awk -v want="$codename" '
    # deb822: a stanza ends at a blank line or with its file.
    function stanza_end() {
        if (deb && suite && main && enabled && uri) print uri
        deb = suite = main = 0; enabled = 1; uri = ""
    }
    FNR == 1 { stanza_end() }
    FILENAME ~ /\.sources$/ {
        if ($0 ~ /^[[:space:]]*$/) { stanza_end(); next }
        key = tolower($1)
        if (key == "uris:") uri = $2
        if (key == "enabled:" && tolower($2) == "no") enabled = 0
        for (i = 2; i <= NF; i++) {
            if (key == "types:" && $i == "deb") deb = 1
            if (key == "suites:" && $i == want) suite = 1
            if (key == "components:" && $i == "main") main = 1
        }
    }
    # One-line format: deb [options] URI SUITE COMPONENTS...
    FILENAME ~ /\.list$/ && $1 == "deb" {
        sub(/\[[^]]*\]/, "")
        if ($3 == want) for (i = 4; i <= NF; i++) if ($i == "main") { print $2; break }
    }
    END { stanza_end() }
' "${files[@]}" /dev/null | sed -n 1p)

[ -n "$uri" ] || { echo "apt-mirror: no deb source of $codename main in $root/sources.list{,.d/}; set DEBIAN_MIRROR" >&2; exit 1; }
echo "$uri"

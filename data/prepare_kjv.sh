#!/bin/sh
# data/prepare_kjv.sh OUT: writes the King James Bible as plain text to OUT, one verse per line
# without its reference ("In the beginning God created the heaven and the earth."), 31,102 lines,
# 4,137,850 bytes of ASCII. The source is Debian's bible-kjv-text (the text, in the compressed,
# indexed format of the `bible` program) read through bible-kjv's `bible` program:
# `bible -f Gen1:1-Rev22:21` prints every verse as "Ge1:1 text"; sed drops the reference.
# The KJV text is in the public domain (its copyright expired; see
# /usr/share/doc/bible-kjv-text/copyright). Run by `make corpus`, which installs the packages.
set -eu
out=$1
expected=b5c4940bcfeee072c0935b5200d0f9d88a00a0199cb0961d16133458fcdfae5d # bible-kjv 4.38
command -v bible >/dev/null 2>&1 || { echo "prepare_kjv: the 'bible' program is missing: apt-get install bible-kjv" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
bible -f Gen1:1-Rev22:21 </dev/null | sed 's/^[^ ]* //' >"$tmp"
lines=$(wc -l <"$tmp")
[ "$lines" -eq 31102 ] || { echo "prepare_kjv: expected 31102 verses, got $lines" >&2; exit 1; }
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
[ "$sum" = "$expected" ] || echo "prepare_kjv: note: sha256 $sum differs from bible-kjv 4.38's text ($expected)" >&2
mv "$tmp" "$out"
trap - EXIT
echo "prepare_kjv: wrote $out ($(wc -c <"$out") bytes, $lines verses)"

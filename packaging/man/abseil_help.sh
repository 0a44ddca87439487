#!/bin/sh
# Runs PROGRAM OPTION and, for --help, rewrites Abseil's flag listing into the
# GNU layout help2man understands ("Options:", one flag a line, its text
# indented below), so that the man page gets one entry per flag:
#
#   Abseil:   "    --threads (Shard threads, ...);\n      default: 0;"
#   becomes:  "  --threads=VALUE\n<24 spaces>Shard threads, ... (default: 0)"
#
# (help2man takes a line indented 20 columns or more as the option's text).
#
# The "Flags from <path>:" headings (the build machine's source path) and the
# closing "Try --helpfull" hint are dropped.
#   abseil_help.sh PROGRAM --help | --version
set -u
program=$1
shift
if [ "${1:-}" != "--help" ]; then
  exec "$program" "$@"
fi
# Abseil exits 1 after printing --help; that is not an error here.
"$program" --help 2>&1 | awk '
  function flush() {
    if (entry == "") return
    name = entry; sub(/ .*/, "", name)
    text = substr(entry, length(name) + 2)
    default_value = ""
    if (match(text, /; default: .*;$/)) {
      default_value = substr(text, RSTART + 11, RLENGTH - 12)
      text = substr(text, 1, RSTART - 1)
    }
    sub(/^\(/, "", text); sub(/\)$/, "", text)
    printf "  %s=VALUE\n%24s%s", name, "", text
    if (default_value != "") printf " (default: %s)", default_value
    printf "\n"
    entry = ""
  }
  /^  Flags from .*:$/ { flush(); if (!in_flags) print "Options:"; in_flags = 1; next }
  /^    --/ { flush(); entry = substr($0, 5); next }
  /^      / && entry != "" { line = $0; sub(/^ +/, "", line); entry = entry " " line; next }
  /^Try --helpfull/ { flush(); skipping = 1; next }
  skipping { next }
  { flush(); print }
  END { flush() }
'
exit 0

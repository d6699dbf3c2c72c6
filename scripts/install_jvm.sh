#!/usr/bin/env bash
# Resolve the JVM artifacts of the embedded local stack from Maven Central.
#
#   scripts/install_jvm.sh [component ...]     (default: kafka registry spark hdfs)
#
# Each component (a profile of compose/local/pom.xml) lands in
# $KAPPA_DEPS_DIR/jvm/<component>/ (default .deps/jvm/<component>/) with a stamp
# file holding a hash of the pom; a component whose stamp matches is skipped, so
# a second run takes well under a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$root/compose/local/pom.xml"
deps="${KAPPA_DEPS_DIR:-.deps}"
case "$deps" in /*) ;; *) deps="$root/$deps" ;; esac

fail() { echo "install_jvm: $*" >&2; exit 1; }

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(kafka registry spark hdfs)

pom_hash="$(sha256sum "$pom" | cut -d' ' -f1)"
todo=()
for c in "${components[@]}"; do
  case "$c" in kafka | registry | spark | hdfs) ;; *) fail "unknown component '$c' (kafka, registry, spark, hdfs)" ;; esac
  stamp="$deps/jvm/$c/.installed"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$pom_hash" ]]; then
    continue
  fi
  todo+=("$c")
done
[[ ${#todo[@]} -gt 0 ]] || exit 0

command -v mvn >/dev/null 2>&1 || fail "Maven (mvn) is not on PATH; install it (apt-get install maven) and rerun"
command -v java >/dev/null 2>&1 || fail "Java is not on PATH; install a JDK 17+ (apt-get install openjdk-17-jdk-headless) and rerun"

mkdir -p "$deps/jvm"
[[ -f "$deps/.gitignore" ]] || printf '*\n' >"$deps/.gitignore"

# One install at a time; a second one waits, then finds the stamps current.
exec 9>"$deps/jvm/.install.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

for c in "${todo[@]}"; do
  stamp="$deps/jvm/$c/.installed"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$pom_hash" ]]; then
    continue # done by the install we waited for
  fi
  echo "install_jvm: resolving $c from Maven Central into ${deps#"$root"/}/jvm/$c" >&2
  # Resolve into a fresh folder, then swap it in: a stack or a Spark job using
  # the old one never sees a half-filled folder.
  staging="$deps/jvm/.staging"
  rm -rf "$staging" "$deps/jvm/.target"
  mkdir -p "$staging/jvm"
  log="$(mktemp)"
  if ! mvn -q -B -f "$pom" -P"$c" -Ddeps.dir="$staging" generate-resources >"$log" 2>&1; then
    grep -E '^\[ERROR\]' "$log" | sed 's/\x1b\[[0-9;]*m//g' | head -n 5 >&2 || tail -n 20 "$log" >&2
    rm -rf "$log" "$staging"
    fail "could not resolve '$c' (see Maven's message above; is Maven Central reachable?)"
  fi
  rm -f "$log"
  printf '%s\n' "$pom_hash" >"$staging/jvm/$c/.installed"
  rm -rf "$deps/jvm/.old-$c"
  [[ ! -e "$deps/jvm/$c" ]] || mv "$deps/jvm/$c" "$deps/jvm/.old-$c"
  mv "$staging/jvm/$c" "$deps/jvm/$c"
  rm -rf "$deps/jvm/.old-$c" "$staging"
done

#!/usr/bin/env bash
# fuzz.sh: fuzz every request decoder and validator through the real router
# and store, FUZZTIME (default 3s) per target. Needs DATABASE_URL (make test
# and make fuzz run it inside a throwaway PostgreSQL). New failing inputs are
# kept in internal/http/testdata/fuzz/ and then run by every go test.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=$(grep -ho '^func Fuzz[A-Za-z]*' internal/http/*_test.go | sed 's/^func //')
for t in $targets; do
  go test -run='^$' -fuzz="^$t\$" -fuzztime="${FUZZTIME:-3s}" ./internal/http/ 2>&1 | grep -vE '^fuzz: elapsed' || {
    echo "fuzz: $t failed"; exit 1; }
done
echo "fuzz: $(echo $targets | wc -w) targets, ${FUZZTIME:-3s} each, no failure"

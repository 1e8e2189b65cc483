#!/usr/bin/env bash
# vuln.sh: 'make vuln'. Runs govulncheck (pinned in go.mod's tool block) on
# every package, against the public Go vulnerability database when it
# answers, else against an offline snapshot of it: $FSTORE_VULNDB, or
# ../shared/vulndb beside the checkout. It says which database it used and
# how old it is, and fails when it has none: a check that cannot run must
# not pass.
set -euo pipefail
cd "$(dirname "$0")/.."

public=https://vuln.go.dev
db=""
if curl -fsS -m 5 -o /dev/null "$public/index/db.json" 2>/dev/null; then
  db=$public
  echo "vuln: database $public (public)"
else
  # /work/shared is where this workplace keeps the snapshot for clones elsewhere.
  for dir in "${FSTORE_VULNDB:-}" ../shared/vulndb ../../shared/vulndb /work/shared/vulndb; do
    if [ -n "$dir" ] && [ -f "$dir/index/db.json" ]; then
      dir=$(cd "$dir" && pwd)
      db="file://$dir"
      # Its newest entry tells how fresh the snapshot is (its dates are unset).
      newest=$(ls "$dir/ID" 2>/dev/null | sort -V | tail -n 1)
      echo "vuln: $public cannot be reached; database: the offline snapshot $dir" \
        "($(ls "$dir/ID" 2>/dev/null | wc -l) entries, newest ${newest%.json})"
      break
    fi
  done
fi
if [ -z "$db" ]; then
  echo "vuln: neither $public nor an offline snapshot can be read." >&2
  echo "  Set FSTORE_VULNDB to a copy of the Go vulnerability database (v1 layout), or allow $public." >&2
  exit 1
fi
command -v jq >/dev/null || { echo "vuln: needs jq (apt-get install jq)" >&2; exit 1; }
# Every finding, reachable or not, must be fixed or justified in
# .govulncheck-allow (as .golangci.yml justifies each exclusion); one our code
# can reach (symbol level) fails whatever the list says.
findings=$(go tool govulncheck -db "$db" -format json ./... | jq -r 'select(.finding) | .finding
  | "\(.osv) \(if (.trace[0].function // "") != "" then "symbol" elif (.trace[0].package // "") != "" then "package" else "module" end) \(.trace[0].module)"' | sort -u)
allowed=$(grep -v '^#' .govulncheck-allow | awk '{print $1}')
status=0
while read -r id level module; do
  [ -n "$id" ] || continue
  if [ "$level" = symbol ]; then
    echo "vuln: $id in $module is reachable from fstore's code: fix it (upgrade $module)" >&2; status=1
  elif grep -qx "$id" <<<"$allowed"; then
    echo "vuln: $id ($level level, $module) accepted: $(grep "^$id " .govulncheck-allow | cut -d' ' -f2-)"
  else
    echo "vuln: $id ($level level, $module) is neither fixed nor justified in .govulncheck-allow" >&2; status=1
  fi
done <<<"$findings"
[ "$status" -eq 0 ] && echo "vuln: no vulnerability reachable; every other finding justified"
exit $status

#!/usr/bin/env bash
# The real Autobahn|Testsuite (fuzzingclient) against wschat's /echo: sections 1 to 10, and
# permessage-deflate's sections 12 and 13.
#
#     scripts/autobahn.sh target/release/wschat-server [CASES...]
#
# CASES are wstest's patterns (default: "1.*" to "10.*", "12.*" and "13.*"); e.g. "12.*" "13.*"
# runs only the compression sections.
# Autobahn's wstest runs on Python 2.7 only: set PYTHON2 to one (default `python2.7`; pyenv
# has 2.7.18). The suite is installed once with pip into AUTOBAHN_DIR (default
# ~/.cache/wschat-autobahn); the reports go to a temporary directory, removed at exit. The
# message limit is raised to 16 MiB, as section 9 expects. Prints the count of each verdict and
# every case that is not OK, NON-STRICT or INFORMATIONAL; exits 1 if there is one.
set -euo pipefail

server=${1:?usage: scripts/autobahn.sh PATH/TO/wschat-server [CASES...]}
shift
if [ $# -eq 0 ]; then
    set -- "1.*" "2.*" "3.*" "4.*" "5.*" "6.*" "7.*" "8.*" "9.*" "10.*" "12.*" "13.*"
fi
cases=$(printf '"%s", ' "$@")
cases="[${cases%, }]"
python2=${PYTHON2:-python2.7}
lib=${AUTOBAHN_DIR:-$HOME/.cache/wschat-autobahn}
port=${AUTOBAHN_PORT:-9777}

if [ ! -d "$lib/autobahntestsuite" ]; then
    "$python2" -m pip install --quiet --target "$lib" autobahntestsuite
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "autobahn: port $port is taken (set AUTOBAHN_PORT)" >&2
    exit 1
fi
"$server" "127.0.0.1:$port" -q --max-message-size 16MiB --max-outbound 17MiB --history 0 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null || { echo "autobahn: the server did not start" >&2; exit 1; }

cat > "$work/spec.json" <<SPEC
{"outdir": "$work/reports", "servers": [{"agent": "wschat", "url": "ws://127.0.0.1:$port/echo"}],
 "cases": $cases,
 "exclude-cases": [], "exclude-agent-cases": {}}
SPEC
# site.addsitedir reads the packages' .pth files (zope is a namespace package).
(cd "$work" && "$python2" -c "import site, sys; site.addsitedir('$lib'); \
sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', 'spec.json']; \
from autobahntestsuite.wstest import run; run()" > wstest.log 2>&1)

python3 - "$work/reports/index.json" <<'PY'
import collections, json, sys
cases = json.load(open(sys.argv[1]))["wschat"]
passing = {"OK", "NON-STRICT", "INFORMATIONAL"}
verdicts = collections.Counter(case["behavior"] for case in cases.values())
print(f"autobahn: {len(cases)} cases,", ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
bad = [(k, c) for k, c in sorted(cases.items()) if c["behavior"] not in passing or c["behaviorClose"] not in passing]
for k, c in bad:
    print(f"  {k}: {c['behavior']} (close: {c['behaviorClose']})")
sys.exit(1 if bad else 0)
PY

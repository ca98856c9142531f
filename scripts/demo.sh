#!/usr/bin/env bash
# README's first command: install what is missing, build, run dpsw on
# config/demo.yaml and show what it does. Ctrl-C stops dpsw, which removes
# every namespace, link and XDP program it created.
#
#   sudo scripts/demo.sh [CONFIG]     (default: config/demo.yaml)
# With no terminal on stdin (e.g. in CI) it stops by itself after the tour.
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-config/demo.yaml}
[[ $EUID -eq 0 ]] || { echo "demo: run as root: sudo $0" >&2; exit 1; }

bash scripts/install-deps.sh || exit 1
[[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release >/dev/null || exit 1
ninja -C build >/dev/null || { echo "demo: build failed (run: ninja -C build)" >&2; exit 1; }

DPSW=build/control/dpsw
CTL=build/control/dpswctl
# Instance name and socket come from the config (defaults as in SPEC §3).
NAME=$(awk '/^switch:/{s=1;next} s&&/^[^ ]/{s=0} s&&$1=="name:"{print $2}' "$CONFIG"); NAME=${NAME:-dpsw}
SOCK=$(awk '/^switch:/{s=1;next} s&&/^[^ ]/{s=0} s&&$1=="control_socket:"{print $2}' "$CONFIG"); SOCK=${SOCK:-/run/dpsw/dpsw.sock}
LOG=$(mktemp /tmp/dpsw-demo.XXXXXX.log)

# The outside world of the demo: a namespace of ours behind a veth that dpsw
# uses as its uplink (documentation addresses; never the machine's own links).
UPLINK=$(awk '/^uplink:/{u=1} u&&/interface:/{gsub(/[{},]/," "); for(i=1;i<=NF;i++) if($i=="interface:") print $(i+1); exit}' "$CONFIG")
OUTSIDE="$NAME-out"
if [[ -n $UPLINK ]]; then
  ip netns del "$OUTSIDE" 2>/dev/null; ip link del "$UPLINK" 2>/dev/null
  ip netns add "$OUTSIDE"
  ip link add "$UPLINK" type veth peer name eth0 netns "$OUTSIDE"
  ip -n "$OUTSIDE" addr add 198.51.100.1/24 dev eth0
  ip -n "$OUTSIDE" link set eth0 up
  ip -n "$OUTSIDE" link set lo up
fi
remove_outside() { [[ -n $UPLINK ]] && { ip link del "$UPLINK" 2>/dev/null; ip netns del "$OUTSIDE" 2>/dev/null; }; return 0; }

"$DPSW" --check --config "$CONFIG" || { remove_outside; exit 2; }
"$DPSW" --config "$CONFIG" >"$LOG" 2>&1 &
PID=$!
stopped=0
stop() {
  ((stopped)) && return
  stopped=1
  echo; echo "== stopping dpsw (pid $PID)"
  kill -TERM "$PID" 2>/dev/null; wait "$PID"; rc=$?
  tail -n 2 "$LOG"
  remove_outside
  left=$(ip netns list | awk -v p="$NAME-" 'index($1,p)==1{print $1}'; ip -o link | awk -F': ' -v p="$NAME-" 'index($2,p)==1{print $2}')
  if [[ -z $left ]]; then echo "== clean: no namespace, link or XDP program of '$NAME' is left (exit code $rc)"
  else echo "== LEFT BEHIND: $left"; rc=1; fi
  rm -f "$LOG"
  exit $rc
}
trap stop INT TERM EXIT

for _ in $(seq 100); do [[ -S $SOCK ]] && "$CTL" -s "$SOCK" version >/dev/null 2>&1 && break; kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }; sleep 0.1; done
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$NAME-$ns" "$@"; }
ip_of() { "$CTL" -s "$SOCK" --json show endpoints | python3 -c "import json,sys; e={x['name']:x for x in json.load(sys.stdin)}; print([a['ip'].split('/')[0] for a in e['$1']['attachments'] if a['network']=='$2'][0])"; }

say "dpsw is running (pid $PID): endpoints and networks"
"$CTL" -s "$SOCK" show endpoints
echo; "$CTL" -s "$SOCK" show networks

WEB=$(ip_of web frontend); API_F=$(ip_of api frontend); API_B=$(ip_of api backend); DB=$(ip_of db backend)
say "same network (frontend): web -> api $API_F"
in_ns web ping -c 3 -i 0.2 -W 1 "$API_F" | tail -2
say "same network (backend): api -> db $DB"
in_ns api ping -c 3 -i 0.2 -W 1 "$DB" | tail -2
say "different networks: web -> db $DB must fail (frames never cross networks)"
if in_ns web ping -c 2 -W 1 "$DB" >/dev/null 2>&1; then echo "UNEXPECTED: web reached db"; else echo "no reply: isolated, as it should be"; fi
say "TCP: web -> api, iperf3 for 3 s"
in_ns api iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
SRV=$!
sleep 0.5
in_ns web iperf3 -c "$API_F" -p 5201 -t 3 | grep -E "sender|receiver"
wait "$SRV"
if [[ -n $UPLINK ]]; then
  say "NAT: web -> the outside world (198.51.100.1); the outside sees only the host address"
  in_ns web ping -c 2 -i 0.3 -W 1 198.51.100.1 | tail -2
  say "published port: outside -> 198.51.100.10:8080 -> web:80; web sees the real client"
  in_ns web iperf3 -s -1 -p 80 2>&1 | grep -m1 "Accepted connection" &
  SRV=$!
  sleep 0.5
  ip netns exec "$OUTSIDE" iperf3 -c 198.51.100.10 -p 8080 -t 2 | grep -E "receiver"
  wait "$SRV"
  echo; "$CTL" -s "$SOCK" show conntrack
fi
say "sidecar (container:web) shares web's namespace; batch (none) has only loopback"
in_ns batch ip -br link
say "counters and learned MACs"
"$CTL" -s "$SOCK" show counters
echo; "$CTL" -s "$SOCK" show mac

if [[ -t 0 ]]; then
  say "dpsw keeps forwarding. Try: sudo ip netns exec $NAME-web ping $API_F   |   $CTL -s $SOCK show counters"
  echo "Press Ctrl-C to stop dpsw and remove everything it created."
  wait "$PID"
fi

#!/usr/bin/env bash
# swarmq-healthcheck ADDRESS [PATH]
#
# GET http://ADDRESS/PATH with bash builtins only (the images carry no curl or wget) and exit 0
# on a 2xx answer, 1 otherwise. ADDRESS is host:port as the daemons take it ("$HOST:$PORT" of the
# coordinator, SWARMQ_RUNNER_HTTP of a runner); a wildcard host (0.0.0.0, ::, empty) is probed on
# 127.0.0.1. An empty ADDRESS means the listener is disabled: nothing to probe, exit 0.
set -u
addr=${1-}
path=${2:-/readyz}
if [ -z "$addr" ]; then
  echo "swarmq-healthcheck: no address given (listener disabled), nothing to check"
  exit 0
fi
port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
case $port in
  '' | *[!0-9]*) echo "swarmq-healthcheck: bad address '$addr' (expected host:port)" >&2; exit 2 ;;
esac
case $host in
  '' | 0.0.0.0 | :: | '*') host=127.0.0.1 ;;
esac
if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "swarmq-healthcheck: cannot connect to $host:$port" >&2
  exit 1
fi
case $host in *:*) hdr="[$host]:$port" ;; *) hdr="$host:$port" ;; esac
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: swarmq-healthcheck\r\nConnection: close\r\n\r\n' \
  "$path" "$hdr" >&3
status=''
IFS=' ' read -r -t 5 _ status _ <&3 || true
status=${status%$'\r'}
exec 3<&-
case $status in
  2[0-9][0-9]) exit 0 ;;
esac
echo "swarmq-healthcheck: GET $path on $hdr answered ${status:-nothing}" >&2
exit 1

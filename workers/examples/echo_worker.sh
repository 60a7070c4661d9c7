#!/bin/sh
# Minimal swarmq worker in POSIX sh (no jq needed): echoes each task back.
#
#   SWARMQ_WORKER_CMD="sh workers/examples/echo_worker.sh"
#
# Protocol (docs/worker-protocol.md): first task in $TASK_ID/$TASK_DESCRIPTION,
# later tasks as JSON lines {"taskId":"...","description":"..."} on stdin,
# stdin closed = no task left -> exit 0. Reports are JSON lines on stdout.
# Every other output must go to stderr.

set -u

TAB=$(printf '\t')
CR=$(printf '\r')

# A JSON string literal (with quotes) for arbitrary text: drop control
# characters JSON cannot carry raw, escape \ " tab CR, join lines with \n.
# (Backslashes are produced by sed and awk's printf %c 92 only: awk
# implementations disagree on backslashes in gsub replacements.)
json_str() {
    printf '%s' "$1" | tr -d '\000-\010\013\014\016-\037' \
        | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$TAB/\\\\t/g" -e "s/$CR/\\\\r/g" \
        | awk 'BEGIN { ORS = ""; printf "\"" } { if (NR > 1) printf "%cn", 92; printf "%s", $0 } END { printf "\"" }'
}

# The raw JSON string literal (quotes and escapes kept) of key $2 in the JSON
# object line $1, or nothing. Good enough for the runner's flat task lines.
json_field() {
    printf '%s\n' "$1" | awk -v key="$2" '{
        if (match($0, "\"" key "\"[ \t]*:[ \t]*\"([^\"\\\\]|\\\\.)*\"")) {
            s = substr($0, RSTART, RLENGTH)
            sub(/^"[^"]*"[ \t]*:[ \t]*/, "", s)
            print s
        }
    }'
}

emit() { printf '%s\n' "$1"; }

# $1 = task id literal, $2 = description literal (both JSON string literals)
work() {
    w_id=${1#\"}; w_id=${w_id%\"}
    w_desc=${2#\"}
    emit "{\"type\":\"log\",\"action\":\"echo worker: working on task ${w_id}\"}"
    emit "{\"type\":\"log\",\"reasoning\":$2}"
    emit "{\"type\":\"complete\",\"todoId\":$1,\"result\":\"echo: ${w_desc}}"
}

cleanup() { echo "echo_worker: releasing resources" >&2; }
trap 'cleanup; exit 143' TERM

for v in SESSION_ID AGENT_ID TASK_ID; do
    eval "val=\${$v:-}"
    if [ -z "$val" ]; then echo "echo_worker: $v missing; start me from a swarmq runner" >&2; exit 2; fi
done
if [ -z "${TASK_DESCRIPTION+set}" ]; then echo "echo_worker: TASK_DESCRIPTION missing" >&2; exit 2; fi

work "$(json_str "$TASK_ID")" "$(json_str "$TASK_DESCRIPTION")"

while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] && continue
    id=$(json_field "$line" taskId)
    desc=$(json_field "$line" description)
    if [ -z "$id" ] || [ "$id" = '""' ] || [ -z "$desc" ]; then
        echo "echo_worker: malformed task line: $line" >&2
        exit 2
    fi
    work "$id" "$desc"
done

cleanup
exit 0

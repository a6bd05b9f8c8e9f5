#!/bin/sh
# verify.sh URL STATUS EXPECT TIMEOUT INTERVAL BODYFILE
#
# Ask URL until it answers STATUS with a body that contains EXPECT (the release id; empty:
# any body), for at most TIMEOUT seconds, every INTERVAL seconds. Bounded by a deadline, not
# a count of tries: each curl may take up to its own --max-time.
# Exit 0 when verified; 1 with the last status and the start of the body when not.
set -u
url=$1 status=$2 expect=$3 timeout=$4 interval=$5 body=$6
max_time=$timeout
[ "$max_time" -gt 5 ] && max_time=5
end=$(( $(date +%s) + timeout ))
while :; do
    code=$(curl -sS -o "$body" -w '%{http_code}' --max-time "$max_time" "$url" 2>/dev/null)
    if [ "$code" = "$status" ]; then
        if [ -z "$expect" ] || grep -qF -- "$expect" "$body"; then
            echo "verified: HTTP $code from $url"
            rm -f "$body"
            exit 0
        fi
        why="HTTP $code but the body does not contain release $expect"
    else
        why="HTTP $code, want $status"
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
        echo "verify failed after ${timeout}s: $why ($url)"
        head -c 300 "$body" 2>/dev/null
        echo
        rm -f "$body"
        exit 1
    fi
    sleep "$interval"
done

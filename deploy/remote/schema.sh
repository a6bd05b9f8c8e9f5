#!/bin/sh
# schema.sh status RELEASE_DIR PHP        the release's migrations: "ran NAME" / "pending NAME"
# schema.sh ahead LIVE_DIR TARGET_DIR PHP  migrations the database ran that TARGET_DIR lacks
# schema.sh migrate DEPLOY_PATH RELEASE_DIR RELEASE PHP [OPTIONS...]
# schema.sh down DEPLOY_PATH RELEASE_DIR PHP    maintenance mode, only when migrations are pending
# schema.sh up DEPLOY_PATH PHP                  out of maintenance mode, if `down` put it there
#
# All through the app's own artisan (its .env, its database config). `status` reads
# `migrate:status`, in Laravel 8's table ("| Yes | NAME | 1 |") or 9+'s lines ("NAME ... Ran").
# `ahead` is what a rollback to TARGET_DIR does not undo: the schema stays where it is (no
# migrate:rollback is ever run by the tool); exit 0 always, with a WARNING line when non-empty.
# `migrate` runs `migrate --force`, prints its output, and appends to the host's history which
# migrations this release ran; its exit code is migrate's. `down` leaves a mark
# (.deploy/maintenance) so `up` only ends what the tool began; storage/ is shared by the
# releases of a host, so `artisan down` in the new release takes the live one down too.
set -u
status() {
    (cd "$1" && "$2" artisan migrate:status --no-interaction 2>&1) | awk '
        /^\| *(Yes|No) *\|/ { split($0, f, "|"); gsub(/ /, "", f[2]); gsub(/ /, "", f[3])
                               print (f[2] == "Yes" ? "ran " : "pending ") f[3]; next }
        / (Ran|Pending) *$/ { print ($NF == "Ran" ? "ran " : "pending ") $1 }'
}
case ${1:-} in
status)
    status "$2" "$3"
    ;;
ahead)
    live=$2 target=$3 php=$4
    ran=$(status "$live" "$php" | sed -n 's/^ran //p')
    if [ -z "$ran" ]; then
        echo "schema: could not read the migrations of $live (no database, or no migrate:status): not checked"
        exit 0
    fi
    extra=$(printf '%s\n' "$ran" | while read -r name; do
        [ -f "$target/database/migrations/$name.php" ] || echo "$name"
    done)
    if [ -n "$extra" ]; then
        echo "WARNING: the database has $(printf '%s\n' "$extra" | grep -c .) migration(s) that $target does not know;" \
             "the schema is NOT rolled back (the tool never runs migrate:rollback): $(printf '%s' "$extra" | tr '\n' ' ')"
    else
        echo "schema: every migration the database ran is known to $target"
    fi
    ;;
migrate)
    root=$2 dir=$3 release=$4 php=$5
    shift 5
    out=$(cd "$dir" && "$php" artisan migrate --force --no-interaction "$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    # Laravel 8: "Migrated:  NAME (12.3ms)"; 9 and later: "  NAME ....... 12ms DONE"
    names=$(printf '%s\n' "$out" | sed -n 's/^Migrated: *\([A-Za-z0-9_]*\).*/\1/p; s/^ *\([0-9][A-Za-z0-9_]*\) \.\..* DONE *$/\1/p')
    json=$(printf '%s\n' "$names" | awk 'NF { printf "%s\"%s\"", (n++ ? "," : ""), $1 }')
    state=migrated
    [ "$rc" -eq 0 ] || state=failed
    printf '{"time": "%s", "action": "migrate", "release": "%s", "state": "%s", "migrations": [%s]}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$release" "$state" "$json" >> "$root/.deploy/history.jsonl"
    exit "$rc"
    ;;
down)
    root=$2 dir=$3 php=$4
    pending=$(status "$dir" "$php" | sed -n 's/^pending //p')
    if [ -z "$pending" ]; then
        echo "no pending migrations: the site stays up"
        exit 0
    fi
    (cd "$dir" && "$php" artisan down --retry=15 --no-interaction) || exit 1
    : > "$root/.deploy/maintenance"
    echo "maintenance mode on: $(printf '%s\n' "$pending" | grep -c .) pending migration(s)"
    ;;
up)
    root=$2 php=$3
    [ -f "$root/.deploy/maintenance" ] || exit 0
    if [ -d "$root/current" ]; then dir=$root/current; else dir=$root; fi
    (cd "$dir" && "$php" artisan up --no-interaction) && rm -f "$root/.deploy/maintenance" && echo "maintenance mode off"
    ;;
*)
    echo "usage: schema.sh status|ahead|migrate|down|up ..." >&2
    exit 2
    ;;
esac

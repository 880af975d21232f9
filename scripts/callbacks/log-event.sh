#!/bin/sh
# Example pgpilot/Patroni callback: appends "<date> <action> <role> <scope>"
# to a file. Configure it for any event, e.g.
#
#   postgresql:
#     callbacks:
#       on_start: /usr/local/lib/pgpilot/log-event.sh
#       on_role_change: /usr/local/lib/pgpilot/log-event.sh /var/log/pgpilot/events.log
#
# pgpilot runs `<callback string> <action> <role> <scope>`, so the last three
# arguments are always action, role and scope; an optional first argument
# names the file (default: $PGPILOT_EVENT_LOG or /tmp/pgpilot-events.log).
set -eu
if [ "$#" -ge 4 ]; then
    file=$1
    shift
else
    file=${PGPILOT_EVENT_LOG:-/tmp/pgpilot-events.log}
fi
action=$1 role=$2 scope=$3
printf '%s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$action" "$role" "$scope" >> "$file"

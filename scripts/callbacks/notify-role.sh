#!/bin/sh
# Example on_role_change callback: logs the new role to syslog and, when this
# node became the primary, runs an optional hook (e.g. move a virtual IP):
#
#   postgresql:
#     callbacks:
#       on_role_change: /usr/local/lib/pgpilot/notify-role.sh
#
# Arguments: <action> <role> <scope>. Keep callbacks short: pgpilot terminates
# one still running after ttl seconds, or when the same event fires again.
set -eu
action=$1 role=$2 scope=$3
logger -t pgpilot "cluster $scope: $action, this node is now $role" 2>/dev/null || true
if [ "$role" = primary ] && [ -n "${PGPILOT_PRIMARY_HOOK:-}" ]; then
    exec "$PGPILOT_PRIMARY_HOOK" "$scope"
fi

#!/bin/sh
# vmalert evaluating pgvigil's own rule files (rules/*.yml, unchanged: the same files
# Prometheus loads) against the store, sending to every Alertmanager of the HA pair.
#
#   VM_URL=http://victoria-metrics:8428 \
#   ALERTMANAGER_URLS="http://alertmanager-1:9093 http://alertmanager-2:9093" \
#   fleet/vmalert.sh [more vmalert flags]
#
# VM_URL serves queries, receives the recording rules' results and the alerts' state
# (ALERTS, ALERTS_FOR_STATE, so a restarted vmalert resumes its `for:` timers), and gives that
# state back at start. Against the VictoriaMetrics cluster or another store, set the three
# URLs apart (docs/fleet.md). PGVIGIL_RULES: a directory of rendered rule files (default: the
# repository's rules/). VMALERT_EXTERNAL_URL: vmalert's address as people reach it, for the
# emails' "Graph" links (default: vmalert's own listen address).
set -eu
: "${VM_URL:?set VM_URL to the store, e.g. http://victoria-metrics:8428}"
: "${ALERTMANAGER_URLS:?set ALERTMANAGER_URLS to the Alertmanagers, space-separated}"
rules=${PGVIGIL_RULES:-$(dirname "$0")/../rules}
set -- \
    -rule="$rules/*.yml" \
    -datasource.url="${VM_DATASOURCE_URL:-$VM_URL}" \
    -remoteWrite.url="${VM_REMOTE_WRITE_URL:-$VM_URL}" \
    -remoteRead.url="${VM_REMOTE_READ_URL:-$VM_URL}" \
    -evaluationInterval="${VMALERT_EVALUATION_INTERVAL:-15s}" \
    "$@"
if [ -n "${VMALERT_EXTERNAL_URL:-}" ]; then
    set -- "$@" -external.url="$VMALERT_EXTERNAL_URL"
fi
for url in $ALERTMANAGER_URLS; do
    set -- "$@" -notifier.url="$url"
done
exec "${VMALERT:-vmalert}" "$@"

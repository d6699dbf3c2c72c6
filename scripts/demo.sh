#!/usr/bin/env bash
# make demo: start the local stack, run the whole pipeline over a few hours of
# simulated event time, and print a summary of what each stage did.
set -euo pipefail
cd "$(dirname "$0")/.."
KAPPA=.venv/bin/kappa
PY=.venv/bin/python
STATE=${KAPPA_STATE_DIR:-.kappa}
mkdir -p "$STATE/logs"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Event time: a simulated clock, one minute of event time per wall second, so
# that windows close within the demo and the range is closed for a replay when
# it ends. It starts three hours ago (on the hour), or after the event time of
# the previous demo on this state folder, so that a rerun does not replay the
# same hour: its records would all be (rightly) late for the streaming windows.
read -r START FROM TO LEDGER_FROM LEDGER_TO < <($PY - "$STATE/demo-clock" <<'EOF'
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

clock = Path(sys.argv[1])
now = datetime.now(UTC)
start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
used = datetime.fromisoformat(clock.read_text().strip()) if clock.exists() else None
if used is not None:
    after = used + timedelta(minutes=15)
    after = after.replace(second=0, microsecond=0) + timedelta(minutes=-after.minute % 5)
    if after + timedelta(minutes=60) <= now:
        start = max(start, after)
    elif after > start:
        print(
            "note: the previous demos used the event time up to now; this run's records are "
            "late for the streaming windows (captured in late/). For a fresh start: "
            f"kappa stack down && rm -rf {clock.parent}",
            file=sys.stderr,
        )
clock.write_text(max(start + timedelta(minutes=60), used or start).isoformat())
fmt = "%Y-%m-%dT%H:%M:%SZ"
# The ledger covers every message time of the run: late records and the
# producer's jitter stamp some before the start; faulty future ones after it.
print(start.strftime(fmt), start.strftime(fmt), (start + timedelta(minutes=30)).strftime(fmt),
      (start - timedelta(hours=1)).strftime(fmt), (now + timedelta(hours=1)).strftime(fmt))
EOF
)

step "1. the local stack (Kafka KRaft + Schema Registry)"
$KAPPA stack up

step "2. validator and aggregation in the background"
# A checkpoint left by an older version of the aggregation query cannot be resumed:
# the demo moves it (and the tables it fed) aside and rebuilds from the topic.
RESET=()
if ! $PY - 2>/dev/null <<'EOF'
import json
from pathlib import Path

from kappa.settings import AggregateSettings, StackSettings
from streams.aggregate.checkpoint import SHAPE, SHAPE_FILE
from streams.aggregate.job import Paths

ckpt = Path(Paths.resolve(AggregateSettings(), StackSettings(), None).checkpoint)
marker = ckpt / SHAPE_FILE
if marker.exists():
    assert json.loads(marker.read_text("utf-8")) == SHAPE
else:
    assert not (ckpt / "offsets").exists()
EOF
then
  echo "  the aggregation checkpoint is from an older query shape: moving it aside (--reset-checkpoint)"
  RESET=(--reset-checkpoint)
fi
$KAPPA validate --max-idle 20 >"$STATE/logs/demo-validate.log" 2>&1 &
VALIDATOR=$!
$KAPPA aggregate --trigger "5 seconds" "${RESET[@]}" >"$STATE/logs/demo-aggregate.log" 2>&1 &
AGGREGATOR=$!
trap 'kill $VALIDATOR $AGGREGATOR 2>/dev/null || true' EXIT
echo "  kappa validate (GX checks, dead letters, exactly once): pid $VALIDATOR"
echo "  kappa aggregate (Spark Structured Streaming, 5 s trigger for the demo): pid $AGGREGATOR"

step "3. producing a minute of CDRs at 10/s, 2% faults, 3% late (event time from $START, 60x)"
$KAPPA produce --duration 60 --rate 10 --bad-rate 0.02 --late-rate 0.03 \
  --clock simulated --start "$START" --speed 60

step "   waiting for the validator to catch up"
wait $VALIDATOR || true
tail -n 3 "$STATE/logs/demo-validate.log"
sleep 10
kill -TERM $AGGREGATOR 2>/dev/null || true
wait $AGGREGATOR 2>/dev/null || true
trap - EXIT

step "4. windowed billing and tower health: the streaming query drains the rest and stops"
$KAPPA aggregate --available-now --top 5 2>>"$STATE/logs/demo-aggregate.log"

step "5. records per topic"
$KAPPA topics --exact

step "6. the dead-letter topic (last 10)"
$KAPPA dlq tail --limit 10

step "7. the ledger: every raw record in exactly one place"
$KAPPA ledger --from "$LEDGER_FROM" --to "$LEDGER_TO"

step "8. a bounded replay of the first half hour of event time into Parquet"
$KAPPA replay --from "$FROM" --to "$TO" --no-progress 2>"$STATE/logs/demo-replay.log"

cat <<EOF

== what next
  follow the dead letters:   $KAPPA dlq tail --follow
  only one rule:             $KAPPA dlq tail --rule phone_format
  top callers and towers:    $KAPPA aggregate --show
  parity stream vs replay:   $KAPPA parity --from $FROM --to $TO
  outputs (Parquet):         $STATE/aggregate/  and  $STATE/replay/
  stack status:              $KAPPA stack status
  stop everything:           $KAPPA stack down
EOF

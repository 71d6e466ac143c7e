#!/usr/bin/env bash
# The README's walkthrough, as run: upload scikit-learn's digits as an archive, score them with
# DLC, select 30% with FlexRand, download the pruned archive. Needs a running service
# (`make run` in another terminal) and curl; JSON fields are read with python.
#
#   bash docs/examples/walkthrough.sh            # against http://127.0.0.1:8000
#   DLCPRUNE_URL=http://host:8000 DLCPRUNE_KEY=dlc_... bash docs/examples/walkthrough.sh
set -euo pipefail
URL=${DLCPRUNE_URL:-http://127.0.0.1:8000}
PY=${PY:-.venv/bin/python}
AUTH=()
if [[ -n "${DLCPRUNE_KEY:-}" ]]; then AUTH=(-H "Authorization: Bearer $DLCPRUNE_KEY"); fi
field() { "$PY" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo '$ python docs/examples/make_digits_archive.py digits.zip'
"$PY" docs/examples/make_digits_archive.py "$WORK/digits.zip"

echo
echo "\$ curl -s -F file=@digits.zip $URL/v1/datasets"
curl -s "${AUTH[@]}" -F "file=@$WORK/digits.zip" "$URL/v1/datasets" | tee "$WORK/ds.json" \
  | "$PY" -m json.tool
DS=$(field "['id']" < "$WORK/ds.json")

echo
BODY="{\"dataset_id\": \"$DS\", \"model\": \"efficientnet_lite0\", \"params\": {\"image_size\": 64, \"schedule\": \"linear\", \"levels\": 10}}"
echo "\$ curl -s -H 'Content-Type: application/json' -d '$BODY' $URL/v1/jobs"
curl -s "${AUTH[@]}" -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/jobs" \
  | tee "$WORK/job.json" | "$PY" -m json.tool
JOB=$(field "['id']" < "$WORK/job.json")

echo
echo "\$ curl -s $URL/v1/jobs/$JOB   # polled every 5 s"
while true; do
  curl -s "${AUTH[@]}" "$URL/v1/jobs/$JOB" > "$WORK/state.json"
  "$PY" - "$WORK/state.json" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
p = j["progress"]
print(f'{j["status"]:9} {p["stage"]:12} {p["done"]:>6}/{p["total"]}  eta {p["eta_seconds"]}')
PYEOF
  STATUS=$(field "['status']" < "$WORK/state.json")
  [[ "$STATUS" == succeeded || "$STATUS" == failed || "$STATUS" == cancelled ]] && break
  sleep 5
done

echo
echo "\$ curl -s '$URL/v1/jobs/$JOB/scores?limit=3'"
curl -s "${AUTH[@]}" "$URL/v1/jobs/$JOB/scores?limit=3" | "$PY" -m json.tool

echo
SEL_BODY='{"keep": 0.3, "strategy": "flexrand", "split": 0.5, "seed": 0}'
echo "\$ curl -s -H 'Content-Type: application/json' -d '$SEL_BODY' $URL/v1/jobs/$JOB/selections"
curl -s "${AUTH[@]}" -H 'Content-Type: application/json' -d "$SEL_BODY" \
  "$URL/v1/jobs/$JOB/selections" | tee "$WORK/sel.json" | "$PY" -m json.tool
SEL=$(field "['id']" < "$WORK/sel.json")

echo
echo "\$ curl -s '$URL/v1/selections/$SEL/items?format=csv' | head -4"
curl -s "${AUTH[@]}" "$URL/v1/selections/$SEL/items?format=csv" > "$WORK/items.csv"
head -4 "$WORK/items.csv"

echo
echo "\$ curl -s -OJ $URL/v1/selections/$SEL/export && unzip -l digits-*.zip | tail -1"
(cd "$WORK" && curl -s "${AUTH[@]}" -OJ "$URL/v1/selections/$SEL/export" && ls digits-*.zip \
  && unzip -l digits-*.zip | tail -1)

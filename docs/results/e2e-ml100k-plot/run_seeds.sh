#!/bin/bash
# Resumable: ID-only vs frozen MiniLM vs top-1 / top-2 layers fine-tuned, SASRec on ml-100k-plot with a 10% cold-item
# split, seeds given as arguments (default 0 1 2). A finished run (results.json) is skipped.
# Usage: /work/bin/slot docs/results/e2e-ml100k-plot/run_seeds.sh [seed ...]   (RUNS=<dir>, default runs/e2e-seeds;
# ROWS="frozen ft1" runs only those rows, default all four; SRC=<a copy of src/> runs that code;
# DATASET=amazon-scientific-mm another dataset, default ml-100k-plot)
. "${VENV:-/work/venv}/bin/activate"
export PYTHONPATH="${SRC:-$(git rev-parse --show-toplevel)/src}"
runs=${RUNS:-runs/e2e-seeds}
mkdir -p "$runs"
common="model=sasrec dataset=${DATASET:-ml-100k-plot} dataset.split.cold_items=0.1 train.progress=false run.dir=$runs"
for seed in ${*:-0 1 2}; do
  for spec in "id:train.epochs=50 model.item_encoder=id" \
              "frozen:train.epochs=50 model.item_encoder=text model.finetune_layers=0" \
              "ft2:train.epochs=3 model.item_encoder=text model.finetune_layers=2" \
              "ft1:train.epochs=6 model.item_encoder=text model.finetune_layers=1"; do
    row=${spec%%:*}; name=$row-s$seed; args=${spec#*:}
    [[ " ${ROWS:-id frozen ft2 ft1} " == *" $row "* ]] || continue
    [ -f "$runs/$name/results.json" ] && continue
    rm -rf "${runs:?}/$name"
    /usr/bin/time -v modalrec train $common $args train.seed=$seed run.name=$name > "$runs/$name.log" 2>&1
  done
done

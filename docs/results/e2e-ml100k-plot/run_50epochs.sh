#!/bin/bash
# the cheap rows again with a 50-epoch cap (early stopping, patience 10): ID-only and frozen MiniLM
. "${VENV:-/work/venv}/bin/activate"
export PYTHONPATH="$(git rev-parse --show-toplevel)/src"
common="model=sasrec dataset=ml-100k-plot dataset.split.cold_items=0.1 train.epochs=50 train.seed=0 train.progress=false run.dir=/tmp/w19runs"
for spec in "id50:model.item_encoder=id" "frozen50:model.item_encoder=text model.finetune_layers=0"; do
  name=${spec%%:*}; args=${spec#*:}
  [ -f /tmp/w19runs/$name/results.json ] && continue
  rm -rf /tmp/w19runs/$name
  /usr/bin/time -v modalrec train $common $args run.name=$name > /tmp/w19runs/$name.log 2>&1
done

#!/bin/bash
# ID-only vs frozen MiniLM vs top-2-layer fine-tuning, SASRec on ml-100k-plot with a 10% cold-item split
. "${VENV:-/work/venv}/bin/activate"
export PYTHONPATH="$(git rev-parse --show-toplevel)/src"
common="model=sasrec dataset=ml-100k-plot dataset.split.cold_items=0.1 train.epochs=3 train.seed=0 train.progress=false run.dir=/tmp/w19runs"
for spec in "ft2:model.item_encoder=text model.finetune_layers=2" "frozen:model.item_encoder=text model.finetune_layers=0" "id:model.item_encoder=id"; do
  name=${spec%%:*}; args=${spec#*:}
  [ -f /tmp/w19runs/$name/results.json ] && continue
  rm -rf /tmp/w19runs/$name
  /usr/bin/time -v modalrec train $common $args run.name=$name > /tmp/w19runs/$name.log 2>&1
done

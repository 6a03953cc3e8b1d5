#!/usr/bin/env bash
# The spine's baselines on ML-1M (registry), one protocol for all: leave-one-out in time order, full ranking
# over all 3,706 items with seen items masked, selection on validation NDCG@10, test scored once.
# Budget (2 shared CPU cores): the epoch caps below; early stopping (patience) may end runs sooner.
# Usage: bash benchmarks/ml1m_baselines.sh [RUNS_DIR]
set -euo pipefail
out="${1:-runs/ml1m-baselines}"
common=(dataset=ml-1m dataset.split.method=loo "run.dir=$out" train.progress=false eval.ks=10,20 --quiet)
run() { local name=$1; shift; [ -f "$out/$name/results.json" ] || modalrec train run.name="$name" "$@" "${common[@]}"; }

run pop model=pop
run itemknn model=itemknn
run ease model=ease
run bpr model=bpr train.epochs=40 train.batch_size=8192 train.lr=0.005 train.patience=5
run sasrec model=sasrec train.epochs=40 train.patience=5
run gru4rec model=gru4rec train.epochs=40 train.patience=5
run lightgcn model=lightgcn train.epochs=15 train.batch_size=16384 train.lr=0.01 train.patience=3
modalrec compare "$out"/{pop,itemknn,ease,bpr,lightgcn,gru4rec,sasrec} \
  --metrics hit@10,ndcg@10,mrr@10,hit@20,ndcg@20,coverage@10,gini@10

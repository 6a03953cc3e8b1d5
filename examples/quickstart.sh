#!/usr/bin/env bash
# The main job: ML-1M from the registry, a sequential model (SASRec) and general models (EASE, Pop) trained and
# evaluated under one leave-one-out protocol (full ranking, seen items masked, selection on validation), then a
# results table and one user's top-10 with titles. About 4.5 minutes on 2 idle CPU cores, 13 with one torch thread on a
# loaded machine (README, Results); one line per epoch shows progress, also under --quiet.
set -euo pipefail
out="runs/quickstart-$(date +%Y%m%d-%H%M%S)"
common=(dataset=ml-1m dataset.split.method=loo "run.dir=$out" --quiet)

modalrec data info ml-1m
modalrec train model=sasrec train.epochs=20 run.name=sasrec "${common[@]}"
modalrec train model=ease run.name=ease "${common[@]}"
modalrec train model=pop run.name=pop "${common[@]}"
modalrec compare "$out/sasrec" "$out/ease" "$out/pop" --metrics hit@10,ndcg@10,mrr@10,hit@20,ndcg@20,coverage@10
modalrec recommend "$out/sasrec" --user 1 -k 10
echo "next: modalrec serve $out/sasrec   (then open http://127.0.0.1:8000/)"

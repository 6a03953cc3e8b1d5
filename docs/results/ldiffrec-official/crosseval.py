"""Scratch (not in the project): score the official L-DiffRec checkpoint and ModalRec's best L-DiffRec checkpoint
on the ML-1M clean test split, each with BOTH metric codes (the release's computeTopNAccuracy and ModalRec's run
results), to separate model differences from protocol differences."""
import sys, glob, json
import numpy as np, torch
sys.path.insert(0, "/tmp/w16/DiffRec/L-DiffRec"); sys.path.insert(0, "/tmp/w16/site")
import evaluate_utils, data_utils
import models.gaussian_diffusion as gd
from modalrec.train.experiment import open_run

torch.set_num_threads(1)
D = "/work/shared/data/ml-1m-diffrec/clean/"
train, valid, test, n_user, n_item = data_utils.data_load(D + "train_list.npy", D + "valid_list.npy", D + "test_list.npy")
mask_tv = (train + valid).tocsr()
targets_te = [test[u].nonzero()[1].tolist() for u in range(n_user)]
targets_va = [valid[u].nonzero()[1].tolist() for u in range(n_user)]

def topk(scores, mask, k=100):
    scores = scores.clone(); r, c = mask.nonzero(); scores[r, c] = -np.inf
    return torch.topk(scores, k).indices.numpy()

def official_metric(pred, targets):
    p, r, n, m = evaluate_utils.computeTopNAccuracy(targets, pred.tolist(), [10, 20, 50, 100])
    return {"recall@10": r[0], "recall@20": r[1], "ndcg@10": n[0], "ndcg@20": n[1]}

def own_recall(pred, targets, k):  # plain definition, no rounding
    return float(np.mean([len(set(pred[u, :k]) & set(t)) / len(t) for u, t in enumerate(targets) if t]))

out = {}
# --- official checkpoint (saved at its best validation epoch)
mp = [p for p in glob.glob("/tmp/w16/saved/ml-1m_clean/*.pth") if not p.endswith("_AE.pth")]
if mp:
    model = torch.load(mp[0], weights_only=False).eval(); ae = torch.load(mp[0][:-4] + "_AE.pth", weights_only=False).eval()
    diffusion = gd.GaussianDiffusion(gd.ModelMeanType.START_X, "linear-var", 0.005, 0.005, 0.02, 40, "cpu")
    x = torch.FloatTensor(train.toarray())
    with torch.no_grad():
        _, lat, _ = ae.Encode(x); rec = diffusion.p_sample(model, lat, 0, False); pred_c = ae.Decode(rec)
    scores = torch.empty_like(pred_c); scores[:, ae.category_map] = pred_c  # back to item ids
    out["official"] = {"test_official_metric": official_metric(topk(scores, mask_tv), targets_te),
                       "test_recall@20_unrounded": own_recall(topk(scores, mask_tv), targets_te, 20),
                       "valid_recall@20_unrounded": own_recall(topk(scores, train), targets_va, 20),
                       "cluster_sizes": [len(c) for c in ae.category_idx]}
# --- ModalRec checkpoint
run = open_run(sys.argv[1])
ds = run.dataset
uid = np.array([int(u) for u in ds.user_ids]); iid = np.array([int(i) for i in ds.item_ids])
with torch.no_grad():
    s = torch.cat([run.model.encode({"users": torch.arange(a, min(a + 1000, len(uid)))}) for a in range(0, len(uid), 1000)])
scores = torch.full((n_user, n_item), -np.inf); scores[torch.from_numpy(uid)[:, None], torch.from_numpy(iid)[None, :]] = s
out["modalrec"] = {"test_official_metric": official_metric(topk(scores, mask_tv), targets_te),
                   "test_recall@20_unrounded": own_recall(topk(scores, mask_tv), targets_te, 20),
                   "valid_recall@20_unrounded": own_recall(topk(scores, train), targets_va, 20),
                   "run_results_test_recall@20": run.results["test"]["recall@20"],
                   "cluster_sizes": list(run.model.group_sizes)}
print(json.dumps(out, indent=1))

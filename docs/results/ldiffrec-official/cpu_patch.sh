#!/usr/bin/env bash
# The four edits made to the scratch copy of YiyanXu/DiffRec (d35a6c6) L-DiffRec/main.py to run it on this CPU,
# written as edits rather than as a diff so that none of the (unlicensed) release's lines are reproduced here.
# Usage: cd <scratch>/DiffRec/L-DiffRec && bash cpu_patch.sh
set -euo pipefail
sed -i 's/^random_seed = 1$/random_seed = int(os.environ.get("SEED", 1))/' main.py   # seed from SEED (default: the release's 1)
sed -i 's/\.A)/.toarray())/g' main.py                                                 # scipy removed the .A shorthand
sed -i 's/num_workers=4/num_workers=0/' main.py                                       # one process, one torch thread
sed -i 's/if epoch - best_epoch >= 20:/if epoch - best_epoch >= int(os.environ.get("STOP_AFTER", 20)):/' main.py  # stop rule's 20
grep -c 'os.environ.get' main.py | grep -qx 2 || { echo "cpu_patch.sh: main.py is not the d35a6c6 release" >&2; exit 1; }

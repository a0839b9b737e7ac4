"""Every switch step, many seeds, for one run (optionally a specific checkpoint file)."""
import argparse, pickle
from common import *
ap = argparse.ArgumentParser()
ap.add_argument("ckpt"); ap.add_argument("first")
ap.add_argument("--seeds", type=int, default=10); ap.add_argument("--s0", type=int, default=100)
ap.add_argument("--s1", type=int, default=600); ap.add_argument("--every", type=int, default=1)
ap.add_argument("--after", type=int, default=300); ap.add_argument("--out", required=True)
a = ap.parse_args()
ck = Path(a.ckpt); ck = latest_checkpoint(ck) if ck.is_dir() else ck
p = InferencePolicy.from_checkpoint(ck)
to, sgn = OTHER[a.first], DIRS[a.first]
rows = []
t0 = time.time()
for seed in range(a.seeds):
    r = rollout(p, a.first, seed, 1000, record=True)
    x = r["x"]
    steps = [s for s in range(a.s0, a.s1 + 1, a.every) if s < len(r["states"]) and (r["fell"] is None or s < r["fell"])]
    if not steps:
        print(seed, "fell at", r["fell"]); continue
    fell, dx = branch(p, a.first, r["states"], steps, to, a.after)
    tr = branch.traj
    for i, s in enumerate(steps):
        st = r["states"][s]
        rows.append(dict(seed=seed, s=s, before=sgn * (x[s] - x[0]), fell_first=r["fell"], fell_after=int(fell[i]),
                         traj=tr[i].astype(np.float32), contacts=r["contacts"][s], vx=st[10], wy=st[12], h=st[2], ang=st[3],
                         q=st[1:19].copy()))
    print(seed, "first fell", r["fell"], f"{time.time()-t0:.0f}s", flush=True)
pickle.dump(dict(rows=rows, ckpt=str(ck), first=a.first, args=vars(a)), open(a.out, "wb"))

"""Switch survey: for every finished biped checkpoint, both switch directions, seeds, switch steps."""
import argparse, pickle
from common import *

ap = argparse.ArgumentParser()
ap.add_argument("--seeds", type=int, default=5)
ap.add_argument("--every", type=int, default=5)
ap.add_argument("--first", type=int, default=100)
ap.add_argument("--last", type=int, default=400)
ap.add_argument("--after", type=int, default=300)
ap.add_argument("--only", default="")
ap.add_argument("--out", default="/tmp/switch_survey/survey.pkl")
a = ap.parse_args()

rows, base = [], []
t0 = time.time()
for d in run_dirs():
    if a.only and a.only not in label(d):
        continue
    ck = latest_checkpoint(d)
    p = InferencePolicy.from_checkpoint(ck)
    for first in ("biped_forward", "biped_backward"):
        to = OTHER[first]
        sgn = DIRS[first]
        for seed in range(a.seeds):
            r = rollout(p, first, seed, 1000, record=True)
            x = r["x"]
            base.append(dict(run=label(d), ckpt=str(ck), task=first, seed=seed, fell=r["fell"],
                             dist1000=sgn * (x[-1] - x[0]), dist400=sgn * (x[min(400, len(x) - 1)] - x[0])))
            steps = [s for s in range(a.first, a.last + 1, a.every) if s < len(r["states"]) and (r["fell"] is None or s < r["fell"])]
            if not steps:
                continue
            fell, dx = branch(p, first, r["states"], steps, to, a.after)
            for s, f, dd in zip(steps, fell, dx):
                st = r["states"][s]  # FULLPHYSICS: time, qpos(9), qvel(9)
                rows.append(dict(run=label(d), task=first, to=to, seed=seed, s=s, before=sgn * (x[s] - x[0]),
                                 fell_after=int(f), dx=float(dd), contacts=r["contacts"][s], vx=st[1 + 9],
                                 wy=st[1 + 9 + 2], h=st[2], ang=st[3]))
        print(f"{label(d):28s} {first:15s} done  {time.time() - t0:6.0f}s", flush=True)
pickle.dump(dict(rows=rows, base=base, args=vars(a)), open(a.out, "wb"))
print("wrote", a.out)

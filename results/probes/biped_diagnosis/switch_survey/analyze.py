import pickle, sys
import numpy as np
from collections import defaultdict
D = pickle.load(open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/switch_survey/survey.pkl", "rb"))
rows, base = D["rows"], D["base"]
runs = list(dict.fromkeys(b["run"] for b in base))
print("== single-direction deterministic rollouts (1000 steps, seeds 0..%d)" % (D["args"]["seeds"] - 1))
print(f"{'run':26s} {'fwd dist m':>22s} {'fwd fell@':>22s} | {'bwd dist m':>22s} {'bwd fell@':>22s}")
for run in runs:
    out = []
    for task in ("biped_forward", "biped_backward"):
        bb = [b for b in base if b["run"] == run and b["task"] == task]
        out.append(" ".join(f"{b['dist1000']:4.1f}" for b in bb))
        out.append(" ".join(f"{b['fell'] or '-':>4}" for b in bb))
    print(f"{run:26s} {out[0]:>22s} {out[1]:>22s} | {out[2]:>22s} {out[3]:>22s}")

def rules(r):
    c = r["contacts"]
    return {"any": True, "both_feet": c[0] and c[1], "|vx|<0.3": abs(r["vx"]) < 0.3,
            "one_foot": c[0] != c[1]}

print("\n== switch survey: per run, first task -> other; over seeds x switch steps %d..%d every %d; after=%d"
      % (D["args"]["first"], D["args"]["last"], D["args"]["every"], D["args"]["after"]))
print(f"{'run':26s} {'switch':8s} {'rule':10s} {'n':>4s} {'before m':>8s} {'surv%':>6s} {'fall@ med':>9s} {'dx med':>7s} {'dx p90':>7s} {'ok%':>5s} {'seeds w/ ok':>11s}")
for run in runs:
    for task in ("biped_forward", "biped_backward"):
        rr = [r for r in rows if r["run"] == run and r["task"] == task]
        if not rr:
            print(f"{run:26s} {'F->B' if task=='biped_forward' else 'B->F':8s} no valid switch (fell before step 100 in every seed)")
            continue
        for rule in ("any", "both_feet", "|vx|<0.3"):
            sel = [r for r in rr if rules(r)[rule]]
            if not sel:
                continue
            surv = np.array([r["fell_after"] < 0 for r in sel])
            fa = np.array([r["fell_after"] for r in sel if r["fell_after"] > 0])
            dx = np.array([r["dx"] for r in sel])
            ok = surv & (dx >= 1.0)
            seeds_ok = len({r["seed"] for r, o in zip(sel, ok) if o})
            print(f"{run:26s} {'F->B' if task=='biped_forward' else 'B->F':8s} {rule:10s} {len(sel):4d} "
                  f"{np.median([r['before'] for r in sel]):8.2f} {100*surv.mean():6.1f} "
                  f"{(np.median(fa) if len(fa) else float('nan')):9.0f} {np.median(dx):7.2f} {np.percentile(dx,90):7.2f} {100*ok.mean():5.1f} {seeds_ok:>11d}")

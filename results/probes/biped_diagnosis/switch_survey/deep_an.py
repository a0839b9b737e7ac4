import pickle, sys, numpy as np
D = pickle.load(open(sys.argv[1], "rb"))
rows = D["rows"]; print(D["ckpt"], D["first"], len(rows), "branches")
f = np.array([r["fell_after"] for r in rows]); S = np.array([r["s"] for r in rows]); seeds = np.array([r["seed"] for r in rows])
T = np.stack([r["traj"] for r in rows])
def surv(N): return (f < 0) | (f > N)
rules = {
  "any": np.ones(len(rows), bool),
  "both_feet": np.array([r["contacts"][0] and r["contacts"][1] for r in rows]),
  "|vx|<0.3": np.array([abs(r["vx"]) < 0.3 for r in rows]),
  "|vx|<0.15": np.array([abs(r["vx"]) < 0.15 for r in rows]),
  "right_only": np.array([r["contacts"][0] and not r["contacts"][1] for r in rows]),
  "left_only": np.array([r["contacts"][1] and not r["contacts"][0] for r in rows]),
  "no_contact": np.array([not r["contacts"][1] and not r["contacts"][0] for r in rows]),
}
print(f"{'rule':11s} {'n':>5s} {'seeds':>5s} {'s100':>5s} {'s150':>5s} {'s200':>5s} {'s300':>5s} {'dx150':>6s} {'dx200':>6s} {'dx300':>6s} {'ok300%':>6s} {'ok200%':>6s}")
for k, m in rules.items():
    if not m.any(): continue
    ok300 = surv(300) & (T[:, 299] >= 1.0)
    ok200 = surv(200) & (T[:, 199] >= 1.0)
    print(f"{k:11s} {m.sum():5d} {len(set(seeds[m])):5d} " + " ".join(f"{100*surv(N)[m].mean():5.0f}" for N in (100,150,200,300)) +
          " " + " ".join(f"{np.median(T[m, n-1]):6.2f}" for n in (150,200,300)) + f" {100*ok300[m].mean():6.1f} {100*ok200[m].mean():6.1f}")
# by switch-step bins
print("\nby switch step bin (all rules)")
for lo in range(100, 601, 50):
    m = (S >= lo) & (S < lo + 50)
    if not m.any(): continue
    print(f"s {lo}-{lo+49}: n={m.sum():4d} surv100 {100*surv(100)[m].mean():5.0f} surv200 {100*surv(200)[m].mean():5.0f} surv300 {100*surv(300)[m].mean():5.0f} "
          f"dx200 med {np.median(T[m,199]):5.2f} dx300 med {np.median(T[m,299]):5.2f} before med {np.median([r['before'] for r,mm in zip(rows,m) if mm]):5.2f}")

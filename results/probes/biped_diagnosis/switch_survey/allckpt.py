from common import *
for d in run_dirs():
    for ck in sorted((d / "checkpoints").glob("ckpt_*.safetensors")):
        p = InferencePolicy.from_checkpoint(ck)
        out = []
        for task in ("biped_forward", "biped_backward"):
            rs = [rollout(p, task, s, 1000) for s in range(3)]
            out.append(" ".join(f"{DIRS[task]*(r['x'][-1]-r['x'][0]):5.1f}/{r['fell'] or '-':>4}" for r in rs))
        print(f"{label(d):26s} {ck.name[5:-12]:>9s}  fwd {out[0]}   bwd {out[1]}", flush=True)

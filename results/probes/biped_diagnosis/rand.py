import numpy as np, mujoco
from mt_specialize.envs.tasks import TaskEnv
env=TaskEnv('biped_forward'); m=env.model; d=env.data
rng=np.random.default_rng(0)
for name,sampler in [('zero',lambda:np.zeros(6)),('N(0,0.3)',lambda:rng.normal(0,0.3,6)),('N(0,1)',lambda:rng.normal(0,1,6))]:
    L=[];DX=[];DC=[];sg=[]
    for ep in range(100):
        env.reset(seed=ep); c0=d.subtree_com[1][0]; x0=d.qpos[0]
        for t in range(1000):
            _,_,te,tr,_=env.step(sampler())
            if te or tr: break
        mujoco.mj_forward(m,d)
        L.append(t+1); DX.append(d.qpos[0]-x0); DC.append(d.subtree_com[1][0]-c0); sg.append(np.sign(d.qpos[2]))
    L,DX,DC,sg=map(np.array,(L,DX,DC,sg))
    print(f'{name:9s}: len {L.mean():.0f}; root dx mean {DX.mean():+.3f} m (frac dx<0 {np.mean(DX<0):.2f}); COM dx mean {DC.mean():+.3f}; end pitch<0 (torso top toward -x) frac {np.mean(sg<0):.2f}; fwd-task vel-reward sum {DX.mean()/1:+.2f} -> per-episode return diff fwd-bwd = {2*DX.mean():+.2f}')

import numpy as np, mujoco, itertools
from mt_specialize.envs.tasks import TaskEnv
m=TaskEnv('biped_forward').model; d=mujoco.MjData(m)
def run(v0, qs, qw, kflex=-0.6, T=375):
    mujoco.mj_resetData(m,d); d.qvel[0]=v0; d.qvel[2]=0; mujoco.mj_forward(m,d)
    for t in range(T):
        tt=t*0.008
        tgt=np.array([qw, kflex if tt<0.15 else 0.0, 0.0, qs, 0.0, 0.0])
        d.ctrl[:]=np.clip(8*(tgt-d.qpos[3:])-0.5*d.qvel[3:],-1,1); d.qacc_warmstart[:]=0
        mujoco.mj_step(m,d,nstep=4)
        h,a=d.qpos[1],d.qpos[2]
        if h<=0.8 or h>=2 or abs(a)>=1: return t+1
    return T
for v0 in [0.5,-0.5,1.0,-1.0]:
    best=max(((run(v0,qs,qw,kf),qs,qw,kf) for qs,qw,kf in itertools.product([0,-0.2,-0.4,-0.6],[0,-0.3,-0.6,-0.9,-1.2],[0,-0.6,-1.2])))
    allv=[run(v0,qs,qw,kf) for qs,qw,kf in itertools.product([0,-0.2,-0.4,-0.6],[0,-0.3,-0.6,-0.9,-1.2],[0,-0.6,-1.2])]
    print(f'push vx0={v0:+.1f}: best survival {best[0]} steps (stance hip {best[1]}, swing hip {best[2]}, knee flex {best[3]}); median over 60 scripted controllers {np.median(allv):.0f}; n survive 3 s: {sum(a>=375 for a in allv)}')

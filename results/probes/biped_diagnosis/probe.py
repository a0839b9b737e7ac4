import numpy as np, mujoco
from mt_specialize.envs.tasks import TaskEnv
env=TaskEnv('biped_forward'); m=env.model; d=env.data
# 1) static: COM x vs support (foot capsule extent) at reset pose
mujoco.mj_resetData(m,d); mujoco.mj_forward(m,d)
com=d.subtree_com[1]; ank=d.xpos[m.body('foot').id]
print('reset pose: COM x=%.3f z=%.3f ankle x=%.3f z=%.3f; foot capsule spans x [%.3f, %.3f]'%(com[0],com[2],ank[0],ank[2],ank[0]-0.06,ank[0]+0.26))
print('hip z', d.xpos[m.body('thigh').id][2], 'lowest foot point z', d.geom_xpos[m.geom('foot_geom').id][2]-0.06)
# 2) zero torque from reset, with pitch perturbation / pitch velocity
def run(dq=0.0, dw=0.0, ctrl=None, T=1000):
    mujoco.mj_resetData(m,d); d.qpos[2]+=dq; d.qvel[2]+=dw; mujoco.mj_forward(m,d)
    for t in range(T):
        d.ctrl[:]=0 if ctrl is None else ctrl(d); d.qacc_warmstart[:]=0
        mujoco.mj_step(m,d,nstep=4)
        h,a=d.qpos[1],d.qpos[2]
        if h<=0.8 or h>=2 or abs(a)>=1: return t+1,h,a,d.qpos[0],d.qpos[3:].round(2)
    return T,h,a,d.qpos[0],d.qpos[3:].round(2)
print('zero torque falls (steps of 8 ms):')
for dq in [0,0.05,-0.05,0.2,-0.2]:
    for dw in [0,1.0,-1.0]:
        n,h,a,x,j=run(dq,dw); print(f'  pitch0={dq:+.2f} pitchvel0={dw:+.1f}: end step {n:4d} h={h:.2f} pitch={a:+.2f} x={x:+.2f} joints={j}')
# 3) passive inverted pendulum on locked joints: use stiff PD to hold joints at 0, measure fall time fwd vs bwd
kp,kd=5.0,0.2
pd=lambda d: np.clip(-(kp*d.qpos[3:]+kd*d.qvel[3:]),-1,1)
print('joints held at 0 by PD (ctrl=-5q-0.2qd, clipped):')
for dq in [0.0,0.02,-0.02,0.1,-0.1]:
    n,h,a,x,j=run(dq,0,pd); print(f'  pitch0={dq:+.2f}: end step {n:4d} h={h:.2f} pitch={a:+.2f} x={x:+.2f} joints={j}')
# 4) joint-space inertia at hip with/without armature
mujoco.mj_resetData(m,d); mujoco.mj_forward(m,d)
M=np.zeros((m.nv,m.nv)); mujoco.mj_fullM(m,M,d.qM)
print('M diag (rootx,rootz,rooty,hipR,kneeR,ankR,...):',M.diagonal().round(3))
print('armature', m.dof_armature.round(2))

import numpy as np, mujoco
from mt_specialize.envs.tasks import TaskEnv
env=TaskEnv('biped_forward'); m=env.model; d=env.data
print(mujoco.__version__)
mujoco.mj_resetData(m,d); mujoco.mj_forward(m,d)
M=np.zeros((m.nv,m.nv))
try: mujoco.mj_fullM(m,d,M)
except Exception as e: print(e); 
print('M diag (rootx,rootz,rooty,hipR,kneeR,ankR,...):',M.diagonal().round(3))
m0=TaskEnv('biped_forward').model; m0.dof_armature[:]=0.0; d0=mujoco.MjData(m0); mujoco.mj_forward(m0,d0)
M0=np.zeros((m.nv,m.nv)); mujoco.mj_fullM(m0,d0,M0); print('without armature:',M0.diagonal().round(3))
# effective torso-pitch inertia when both legs fixed in world (only rooty+hips move: q_hip = -dtheta for each)
# kinetic energy of torso rotation about hip with hips counter-rotating: J = u^T M u, u: rooty=1, hips=-1 (legs fixed in world); x/z of torso fixed? torso rotates about hip point; approximate: rootx/rootz so that hip stays fixed
def eff(Mx):
    u=np.zeros(m.nv); u[2]=1; u[3]=-1; u[6]=-1
    # torso origin is 0.2 above hip; rotating about hip by dθ moves torso origin x by 0.2*dθ (top toward +x for +θ)
    u[0]=0.2
    return u@Mx@u
print('torso pitch inertia about hips with legs fixed: with armature %.3f, without %.3f kg m^2'%(eff(M),eff(M0)))
# FK reachability: ankle position relative to hip in world for pitch theta, over hip,knee ranges
th=np.linspace(-2.618,0,200); kn=np.linspace(-2.618,0,200)
TH,KN=np.meshgrid(th,kn)
a=-TH; b=-KN  # rotation about +y of thigh, and shin relative
for pitch in [-0.8,-0.5,-0.3,0.0,0.3,0.5,0.8]:
    A=a+pitch; # world angle of thigh from vertical-down, measured toward -x positive
    ax=-0.45*np.sin(A)-0.5*np.sin(A+b); az=-0.45*np.cos(A)-0.5*np.cos(A+b)
    # ankle must be below hip by >= 0.55 (torso height >0.8 -> hip > 0.6; ankle >= 0.06 above floor)
    ok=az<=-0.55
    print(f'pitch {pitch:+.1f}: ankle x rel hip with depth>=0.55 m: max ahead(+x) {ax[ok].max():+.3f}, max behind(-x) {ax[ok].min():+.3f}')

import numpy as np, imageio.v3 as iio
from mt_specialize.envs.render import render_frames
from mt_specialize.envs.tasks import get_task
rows=[]
for name,f,idx in [('separate s2 fwd','traj_separate_s2_biped_forward_r0.npz',None),('separate s2 bwd','traj_separate_s2_biped_backward_r0.npz',None),('joint s1 fwd','traj_joint_s1_biped_forward_r0.npz',None)]:
    Q=np.load('/tmp/biped_diag/'+f)['Q']
    n=min(len(Q)-1,200) if 'bwd' in name or 'joint' in name else len(Q)-1
    ids=np.linspace(0,n,8).astype(int) if 'separate s2 fwd'==name else np.arange(100,100+8*12,12)
    fr=render_frames(get_task('biped_forward'),Q[ids],width=240,height=240)
    rows.append(np.concatenate(fr,1)); print(name,ids.tolist(),[round(float(Q[i,2]),2) for i in ids])
iio.imwrite('/tmp/biped_diag/frames.png',np.concatenate(rows,0))

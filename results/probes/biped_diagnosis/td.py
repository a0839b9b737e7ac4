import glob, numpy as np, mujoco, collections
from mt_specialize.envs.tasks import TaskEnv
m=TaskEnv('biped_forward').model; d=mujoco.MjData(m)
hip=m.body('thigh').id; ank=[m.body('foot').id,m.body('foot_left').id]
res=collections.defaultdict(list)
for f in sorted(glob.glob('/tmp/biped_diag/traj_*.npz')):
    z=np.load(f); meth=f.split('traj_')[1].split('_s')[0]; task='fwd' if 'forward' in f else 'bwd'; sgn=1 if task=='fwd' else -1
    Q,CON=z['Q'],z['CON']; full=len(Q)==1001
    td=[];ahead=[]
    for t in range(1,len(CON)):
        mujoco.mj_kinematics(m,d) if False else None
        for k in range(2):
            if CON[t,k] and not CON[t-1,k]:
                d.qpos[:]=Q[t+1]; mujoco.mj_kinematics(m,d)
                td.append(sgn*(d.xpos[ank[k]][0]-d.xpos[hip][0]))
    # per step: max over feet of ankle ahead of hip in travel direction, and pitch into travel
    for t in range(1,len(Q)):
        d.qpos[:]=Q[t]; mujoco.mj_kinematics(m,d)
        ahead.append(max(sgn*(d.xpos[a][0]-d.xpos[hip][0]) for a in ank))
    ahead=np.array(ahead); pitch_into=sgn*Q[1:,2]
    res[task].append(dict(full=full,td=np.mean(td) if td else np.nan,td_max=np.max(td) if td else np.nan,ntd=len(td),ahead=ahead.mean(),frac_ahead=(ahead>0.05).mean(),pitch_into=pitch_into.mean(),
        frac_pitch_into=(pitch_into>0).mean(),len=len(Q)-1))
for task,rs in res.items():
    for sel,name in ((lambda r:True,'all'),(lambda r:r['full'],'full-length'),(lambda r:not r['full'],'terminated')):
        rr=[r for r in rs if sel(r)]
        if not rr: continue
        g=lambda k: np.nanmean([r[k] for r in rr])
        print(f"{task} {name:11s} n={len(rr):2d}: touchdown ankle-ahead-of-hip (travel dir) mean {g('td'):+.3f} m, max/ep {g('td_max'):+.3f}; touchdowns/s {np.sum([r['ntd'] for r in rr])/np.sum([r['len'] for r in rr])/0.008:.2f}; mean lead-foot ahead of hip {g('ahead'):+.3f}, frac steps lead foot >5cm ahead {g('frac_ahead'):.2f}; pitch into travel {g('pitch_into'):+.2f} rad, frac steps pitched into travel {g('frac_pitch_into'):.2f}")

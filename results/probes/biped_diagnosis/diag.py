import glob, json, sys, os
import numpy as np, mujoco
from mt_specialize.envs.tasks import TaskEnv
from mt_specialize.learning.inference import InferencePolicy
ROOT='/work/main/runs/paper/biped_fwd_bwd'
METHODS=['ours_jt400k_sp25','joint','separate','random_jt400k_sp25','append']
SEEDS=[0,1,2]
out=[]
envs={t:TaskEnv(t) for t in ('biped_forward','biped_backward')}
m=envs['biped_forward'].model
scratch=mujoco.MjData(m)
feet=[m.geom('foot_geom').id, m.geom('foot_left_geom').id]
other=[g for g in range(1,m.ngeom) if g not in feet]
rng_lo=m.jnt_range[3:,0]; rng_hi=m.jnt_range[3:,1]
def state_info(qpos,qvel):
    scratch.qpos[:]=qpos; scratch.qvel[:]=qvel; mujoco.mj_forward(m,scratch)
    com=scratch.subtree_com[1].copy()
    # com vel via cvel? use finite diff outside
    c=[0,0,0]  # foot R, foot L, other-body contact
    for i in range(scratch.ncon):
        con=scratch.contact[i]; g=con.geom2 if con.geom1==0 else con.geom1
        if g==feet[0]: c[0]=1
        elif g==feet[1]: c[1]=1
        else: c[2]=1
    # foot x relative to COM
    fx=[scratch.geom_xpos[f][0]-com[0] for f in feet]
    return com, c, fx
for meth in METHODS:
    for seed in (1,2,3):
        run=f'{ROOT}/{meth}/seed{seed}'
        ck=sorted(glob.glob(run+'/checkpoints/*.safetensors'))[-1]
        pol=InferencePolicy.from_checkpoint(ck)
        for task,env in envs.items():
            ti=pol.task_index(task); d=env.data
            for rs in SEEDS:
                obs,_=env.reset(seed=rs)
                com0,_,_=state_info(d.qpos,d.qvel)
                Q=[d.qpos.copy()]; A=[]; R=[]; V=[]; CV=[]; CON=[]; FX=[]
                term=None
                for t in range(1000):
                    a=pol.act(obs[None],np.array([ti]))[0]
                    obs,r,te,tr,info=env.step(a)
                    com,c,fx=state_info(d.qpos,d.qvel)
                    V.append(info['x_velocity']); CV.append((com[0]-com0[0])/env.task.dt); com0=com
                    Q.append(d.qpos.copy()); A.append(a); R.append(r); CON.append(c); FX.append(fx)
                    if te:
                        h,ang=d.qpos[1],d.qpos[2]
                        term='h_low' if h<=0.8 else 'h_high' if h>=2 else ('ang+' if ang>=1 else 'ang-' if ang<=-1 else 'nonfinite')
                        break
                Q=np.array(Q); A=np.array(A); R=np.array(R); V=np.array(V); CV=np.array(CV); CON=np.array(CON); FX=np.array(FX)
                dirn=env.task.direction
                ctrl=0.1*np.sum(A**2,1)
                jq=Q[1:,3:]
                near_lo=(jq-rng_lo<0.05).mean(0); near_hi=(rng_hi-jq<0.05).mean(0)
                rec=dict(method=meth,seed=seed,task=task,reset=rs,len=len(R),ret=float(R.sum()),term=term or 'horizon',
                    end_h=float(Q[-1,1]),end_ang=float(Q[-1,2]),mean_ang=float(Q[1:,2].mean()),mean_h=float(Q[1:,1].mean()),
                    std_ang=float(Q[1:,2].std()),
                    vel=float(dirn*V.mean()),comvel=float(dirn*CV.mean()),vel_rms_diff=float(np.sqrt(((V-CV)**2).mean())),
                    ret_com=float((dirn*CV+1-ctrl).sum()),
                    ctrl=float(ctrl.sum()),absA=float(np.abs(A).mean()),satA=float((np.abs(A)>=1).mean()),
                    near_lo=near_lo.round(3).tolist(),near_hi=near_hi.round(3).tolist(),
                    jmean=jq.mean(0).round(3).tolist(),jmin=jq.min(0).round(3).tolist(),jmax=jq.max(0).round(3).tolist(),
                    contact=CON.mean(0).round(3).tolist(), flight=float((CON[:,:2].sum(1)==0).mean()),
                    footx_td=None)
                np.savez_compressed(f'/tmp/biped_diag/traj_{meth}_s{seed}_{task}_r{rs}.npz',Q=Q,A=A,R=R,V=V,CV=CV,CON=CON,FX=FX)
                out.append(rec)
                print(json.dumps({k:rec[k] for k in ('method','seed','task','reset','len','ret','term','end_h','end_ang','mean_ang','vel','comvel','ctrl','satA')}),flush=True)
json.dump(out,open('/tmp/biped_diag/diag.json','w'),indent=0)

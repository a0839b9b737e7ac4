import numpy as np, mujoco
from mt_specialize.envs.tasks import TaskEnv
env=TaskEnv('biped_forward'); m=env.model; d=env.data
for j in range(m.njnt):
    print(j, m.joint(j).name, m.jnt_type[j], m.jnt_axis[j], m.jnt_range[j], m.jnt_qposadr[j], 'arm',m.dof_armature[m.jnt_dofadr[j]],'damp',m.dof_damping[m.jnt_dofadr[j]])
print('qpos0',m.qpos0)
print('gear',m.actuator_gear[:,0], 'timestep',m.opt.timestep, m.opt.integrator)
for b in range(m.nbody): print(b, m.body(b).name, m.body_mass[b])
print('total mass', m.body_mass.sum())
for g in range(m.ngeom): print(g, m.geom(g).name, m.geom_type[g], m.geom_size[g], m.geom_friction[g], m.geom_bodyid[g])
# FK: hip thigh angle -> knee position relative to hip, in torso frame (torso upright)
mujoco.mj_forward(m,d)
def pos(qj):
    d.qpos[:]=m.qpos0; d.qpos[3:9]=qj; mujoco.mj_kinematics(m,d)
    hip=d.xpos[m.body('thigh').id]; return d
for th in [0,-0.5,-1.0,-1.5]:
    dd=pos([th,0,0,0,0,0])
    knee=dd.xpos[m.body('leg').id]-dd.xpos[m.body('thigh').id]
    print('thigh q=%.2f knee rel hip x=%.3f z=%.3f'%(th,knee[0],knee[2]))
for kn in [0,-0.5,-1.0,-1.5]:
    dd=pos([0,kn,0,0,0,0])
    ank=dd.xpos[m.body('foot').id]-dd.xpos[m.body('leg').id]
    print('knee q=%.2f ankle rel knee x=%.3f z=%.3f'%(kn,ank[0],ank[2]))
for f in [-0.785,0,0.785]:
    dd=pos([0,0,f,0,0,0])
    toe=dd.geom_xpos[m.geom('foot_geom').id]-dd.xpos[m.body('foot').id]
    print('foot q=%.2f foot-centre rel ankle x=%.3f z=%.3f'%(f,toe[0],toe[2]))

import json, numpy as np, collections
D=json.load(open('/tmp/biped_diag/diag.json'))
J=['hipR','kneeR','ankR','hipL','kneeL','ankL']
def summ(rs,label):
    L=np.mean([r['len'] for r in rs]); terms=collections.Counter(r['term'] for r in rs)
    f=lambda k: np.mean([r[k] for r in rs])
    print(f"{label:32s} n={len(rs):2d} len={L:6.0f} ret={f('ret'):6.0f} retCOM={f('ret_com'):6.0f} term={dict(terms)} endh={f('end_h'):.2f} endang={f('end_ang'):+.2f} meanang={f('mean_ang'):+.2f}±{f('std_ang'):.2f} meanh={f('mean_h'):.2f} v={f('vel'):.2f} vCOM={f('comvel'):.2f} rmsdiff={f('vel_rms_diff'):.2f} ctrl/step={np.mean([r['ctrl']/r['len'] for r in rs]):.3f} |a|={f('absA'):.2f} sat={f('satA'):.3f} flight={f('flight'):.2f}")
    nl=np.mean([r['near_lo'] for r in rs],0); nh=np.mean([r['near_hi'] for r in rs],0)
    print(' '*34+'near_lo '+' '.join(f'{j}:{v:.2f}' for j,v in zip(J,nl)))
    print(' '*34+'near_hi '+' '.join(f'{j}:{v:.2f}' for j,v in zip(J,nh)))
    print(' '*34+'jmean   '+' '.join(f'{j}:{v:+.2f}' for j,v in zip(J,np.mean([r['jmean'] for r in rs],0))) + '  contact R,L,other='+str(np.mean([r['contact'] for r in rs],0).round(2)))
for task in ('biped_forward','biped_backward'):
    print('=====',task)
    for meth in ['ours_jt400k_sp25','joint','separate','random_jt400k_sp25','append']:
        for seed in (1,2,3):
            rs=[r for r in D if r['task']==task and r['method']==meth and r['seed']==seed]
            summ(rs,f'{meth} s{seed}')
    summ([r for r in D if r['task']==task],'ALL')

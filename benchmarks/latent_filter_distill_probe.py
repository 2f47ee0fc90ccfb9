"""Would a latent filter trained to reproduce the image filter keep the image filter's pairs? Distils the shipped image
filter's predictions on decoded candidates (the first 768 of the probe's 1024 unfiltered candidates, their latents
and images from `benchmarks/latent_scorer_probe.py --work /tmp/ls`) into a latent-grid segmenter, then compares it and
the real-trained latent filter with the image filter on the other 256 candidates. Prints one JSON.

    python benchmarks/latent_filter_distill_probe.py > benchmarks/results/latent_filter_distill_probe_amd_cpu.json

The built version of this: `fastsynth train-filter --model bundled-256 --distill N` (NOTES, 2026-12-07, evening).
"""
import numpy as np, torch, torch.nn.functional as F, json
from safetensors.torch import load_file
from scipy.stats import spearmanr
from fastsynth.runtime.agreement import AgreementScorer
from fastsynth.metrics.io import load_synthetic
from fastsynth.models.segmenter import SegConfig, build_model, predict, dice_iou
from fastsynth.training.latent_filter import LATENT_SEG
from fastsynth.models.segmenter import binary_loss
from fastsynth.data.pairs import resize_pairs
torch.manual_seed(0)
d=np.load('/tmp/ls/scores.npz'); a=d['image']
z=load_file('/tmp/ls/cand_latents.safetensors')['z']; syn=load_synthetic('/tmp/ls/cand')
img=AgreementScorer('fastsynth/bundled_256/filter-segmenter','cpu','onnx')
pairs=resize_pairs(np.concatenate([syn.images.transpose(0,3,1,2), syn.masks[:,None]],1),128)
tgt=torch.from_numpy(predict(img.fn, pairs[:,:3], 0.5, 64)).float()[:,None]  # the image filter's own prediction
n=len(z); tr=np.arange(n)<768; te=~tr
cfg=SegConfig(**LATENT_SEG, resolution=128, input="latent", autoencoder="taef2")
seg,_=build_model(cfg); opt=torch.optim.AdamW(seg.parameters(),1e-3,weight_decay=1e-4)
zt,tt=z[tr],tgt[tr]; g=torch.Generator().manual_seed(0); steps=1500
sched=torch.optim.lr_scheduler.LambdaLR(opt,lambda k: min(1,(k+1)/75)*0.5*(1+np.cos(np.pi*k/steps)))
seg.train()
for k in range(steps):
    i=torch.randint(0,len(zt),(32,),generator=g); zb,tb=zt[i],tt[i]
    if torch.rand(1,generator=g).item()<0.5: zb,tb=zb.flip(-1),tb.flip(-1)
    lg=F.interpolate(seg(zb),size=(128,128),mode='bilinear',align_corners=False)
    loss=binary_loss(lg,tb); opt.zero_grad(); loss.backward(); opt.step(); sched.step()
seg.eval()
from fastsynth.models.segmenter import predict_latent
p=predict_latent(seg, z[te], 128)
m=(F.interpolate(torch.from_numpy(syn.masks[te])[:,None].float()/255,size=(128,128),mode='area')[:,0]>=0.5).numpy()
w=dice_iou(p,m)[0]; at=a[te]; kp=at>=0.69; t=np.quantile(w,1-kp.mean()); kw=w>=t
lat=d['latent'][te]; kl=lat>=np.quantile(lat,1-kp.mean())
print(json.dumps({"held_out_candidates":int(te.sum()),"distilled":{"spearman":float(spearmanr(at,w)[0]),"jaccard":float((kp&kw).sum()/(kp|kw).sum()),"image_agreement_in_kept":float(at[kw].mean())},
 "real_trained":{"spearman":float(spearmanr(at,lat)[0]),"jaccard":float((kp&kl).sum()/(kp|kl).sum()),"image_agreement_in_kept":float(at[kl].mean())},
 "image_kept_agreement":float(at[kp].mean())},indent=1))

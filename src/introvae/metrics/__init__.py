"""Offline evaluation metrics: each module implements one family and cites the reference it follows.

    fid.py        Frechet distance, KID and the Inception Score on Inception features
    inception.py  the FID Inception-v3 network (pytorch-fid / torch-fidelity weights layout) and its loading
    ssim.py       SSIM and MS-SSIM (PGGAN's convention for small images), MS-SSIM sample diversity
    swd.py        sliced Wasserstein distance on Laplacian-pyramid patches (PGGAN)
    prdc.py       improved precision and recall (Kynkaanniemi et al. 2019)
"""

"""Training of the learned matcher's projection head (Loc2 recipe).

The backbone (DINOv2) stays frozen; its features can be precomputed and cached on disk. The
trainable part is the projection head with its dual-softmax temperature and dustbin. One
training step is fully differentiable:

    features -> head -> dual-softmax probabilities -> top-K / probability-weighted sampling of
    correspondences -> lifted ground points and metric aerial points -> weighted scale-aware
    2-D Procrustes (a torch twin of :mod:`cvgl_ros.core.procrustes`) -> pose -> losses.

Modules:
    procrustes: batched, differentiable weighted Umeyama in 2-D.
    sampling: differentiable correspondence sampling from a dual-softmax matrix.
    losses: Virtual Correspondence Error and the two infoNCE correspondence losses.
    geometry: ground/aerial feature-cell geometry (lifting with depth, metric aerial cells).
    datasets: VIGOR, KITTI (Shi & Li satellite crops) and synthetic orthophoto readers with one
        interface (:class:`~cvgl_ros.training.datasets.TrainingSample`).
    cache: the frozen backbone and the on-disk cache of prepared samples (backbone tokens,
        lifted cell points, depth computed once).
    model: the trainable head + dual softmax (the node's modules) and its checkpoint export.
    config: the frozen training configuration read from YAML (unknown keys are an error).
    step: one differentiable training step, and validation with the node's numpy RANSAC.
    trainer: the training loop (AdamW, AMP on CUDA, checkpoint/resume, logs, best export).
    configs/: example YAML files (synthetic CPU smoke run, VIGOR ViT-L, KITTI ViT-S).

Nothing here is imported by the node; torch is required (extra ``torch``).
"""

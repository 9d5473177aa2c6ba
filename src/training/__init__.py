"""Pretraining with Lightning: token windows (data), optimizers and schedules (optim), the module,
callbacks (metrics, evaluation, checkpoints) and the `pretrain` stage function (pretrain)."""

"""The PyTorch backend: the deploy forward of a :class:`maskrt.model.MaskRCNN`, on CPU or CUDA, optionally
replayed from CUDA graphs (:mod:`maskrt.backends.torch.cuda_graphs`)."""

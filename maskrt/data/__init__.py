"""Image I/O and generated test images (later: the synthetic shapes dataset, COCO I/O and evaluation)."""

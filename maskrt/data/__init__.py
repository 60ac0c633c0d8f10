"""Data: reading images (upright, RGB uint8), generated test images, the synthetic shapes dataset, COCO results
encoding and drawing detections."""

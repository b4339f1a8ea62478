"""Weights -> detections -> counts: the detector, thresholds, scale, tiling, edges, regions, overlays, outputs and the
Ray engine. Inference never imports training code."""

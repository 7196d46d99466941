"""Evaluation: the paper's benchmarks, at scale and resumable.

Modules: ``benchmarks`` (TAP-Vid, CroHD, PointOdyssey: what the test scripts call),
``loop`` (the shared benchmark loop, torchrun sharding, the report), ``scoring`` (one
video: track and measure), ``results`` (the per-video results file) and ``plots``
(survival curve, per-video bars, error by frame).
"""

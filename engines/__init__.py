"""Engines: the three networks, their export to ONNX, and the backends that run them.

Modules: ``networks`` (PyTorch definitions), ``macs`` (parameter / MAC counts), ``export``
(ONNX, dynamic batch), ``backends`` (torch, onnxruntime, openvino, tensorrt behind
:class:`engines.contract.Engine`), ``preprocess`` (device-side input transforms), ``cards`` and
``registry`` (model cards -> :class:`engines.registry.ModelRunner`), ``seed_weights``
(untrained, seeded weights until trained ones ship). Nothing heavy is imported here.
"""

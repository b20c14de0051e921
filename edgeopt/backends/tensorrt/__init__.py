"""TensorRT, one module per job: ``runner`` (the runner; the only module that imports tensorrt), ``settings``
(settings and rows, light), ``plan`` (build plans and ORT GPU options), ``engines`` (the engine cache),
``goldens`` (Polygraphy-format golden inputs/outputs), ``support`` and ``readiness`` (the static check against
the onnx-tensorrt operator tables in ``operators/``, package data).

Imports nothing: the worker and the registry (``edgeopt.backends``) import the module they need by name.
"""

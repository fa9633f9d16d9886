"""The offline model factory: catalog, build, quantize and compile (``posefleet models …``).

It runs in the CLI, never in a serving process: workers only read the repository it writes
(``services.core.runtime.repository``). The factory may import the core; the core never imports
the factory. Code that runs inside the builder virtualenv (TensorFlow, tf2onnx, torch, onnx) is
the ``builder`` subpackage and imports nothing else of Posefleet.
"""

"""Code that runs INSIDE the builder virtualenv, started as ``python -m`` subprocesses.

That venv holds the builder packages (TensorFlow, tf2onnx, torch, onnx) and not Posefleet's
runtime dependencies, so these modules may import only the standard library, the builder
packages and each other (tests/factory/test_layers.py enforces it).
"""

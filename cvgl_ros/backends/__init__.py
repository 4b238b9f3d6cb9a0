"""Inference backends behind one ``InferenceBackend`` protocol.

Lives here: the protocol (named numpy inputs -> named numpy outputs, context manager,
``last_latency_s``), the torch, ONNX Runtime and TensorRT (+ pycuda) runners, backend selection
and the TensorRT engine build with its manifest. Each heavy import stays inside its runner and a
missing package raises an error that names the extra to install.
"""

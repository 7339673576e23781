"""Embedders: the protocol, the hashing, torch, ONNX and OpenVINO backends, backend selection and the encoder pool."""

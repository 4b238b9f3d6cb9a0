"""torch backend: a ``torch.nn.Module`` on CPU, or on CUDA in fp16."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cvgl_ros.backends.base import BackendBase
from cvgl_ros.backends.errors import BackendError, require


class TorchBackend(BackendBase):
    """Runs a module whose ``forward`` takes the inputs positionally.

    Args:
        module: the network (put in eval mode here).
        input_names: names of ``forward``'s positional arguments.
        output_names: names of its outputs (a tensor, or a tuple in this order).
        device: ``"cpu"`` or ``"cuda"``.
        fp16: half precision on CUDA (outputs are returned as float32).
        num_threads: CPU intra-op threads (set process-wide by torch).
    """

    def __init__(
        self,
        module: Any,
        input_names: Sequence[str] = ("images",),
        output_names: Sequence[str] = ("output",),
        device: str = "cpu",
        fp16: bool = False,
        num_threads: int = 2,
    ) -> None:
        super().__init__()
        self._torch: Any = require("torch", "torch", "the torch backend")
        torch = self._torch
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"torch backend needs a torch.nn.Module, got {type(module).__name__}")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("device 'cuda' requested but torch sees no CUDA GPU")
        if fp16 and device != "cuda":
            raise BackendError("fp16 needs device 'cuda' (CPU half precision is slower)")
        if device == "cpu":
            torch.set_num_threads(int(num_threads))
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self._device = torch.device(device)
        self._dtype = torch.float16 if fp16 else torch.float32
        self._module = module.eval().to(self._device, dtype=self._dtype)

    @property
    def module(self) -> Any:
        """The wrapped module."""
        return self._module

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the module; see :meth:`InferenceBackend.run`."""
        self._check_inputs(inputs)
        torch = self._torch
        start = time.perf_counter()
        args = [
            torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self._device, self._dtype)
            for n in self.input_names
        ]
        with torch.inference_mode():
            out = self._module(*args)
        outs = out if isinstance(out, tuple | list) else (out,)
        if len(outs) != len(self.output_names):
            raise BackendError(
                f"module returned {len(outs)} outputs, expected {list(self.output_names)}"
            )
        result = {
            name: t.detach().float().cpu().numpy()
            for name, t in zip(self.output_names, outs, strict=True)
        }
        self.last_latency_s = time.perf_counter() - start
        return result

    def close(self) -> None:
        """Drop the module reference and free cached CUDA memory."""
        if not self._closed and self._device.type == "cuda":
            self._torch.cuda.empty_cache()
        super().close()

"""Run in the oldest supported runtime's venv: score saved inputs with a model.

    python old_runtime.py MODEL.tflite INPUTS.npy OUTPUTS.npz [builtin]

Saves every output tensor, stacked over the inputs, as ``size_<values>`` (a model's outputs are
told apart by size, as the device does: edge/model/classifier.py).  Uses only numpy and
ai_edge_litert so it runs where auricle is not installed.  ``builtin``: TFLite's own kernels, without the
default delegates (XNNPACK), as config ``model.kernels: builtin`` runs them (edge/model/runtime.py).
"""

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def main(model_path: str, inputs_path: str, outputs_path: str, kernels: str = "xnnpack") -> None:
    kwargs = {}
    if kernels == "builtin":
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=model_path, num_threads=1, **kwargs)
    interp.allocate_tensors()
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    results: dict[str, list[np.ndarray]] = {f"size_{int(np.prod(o['shape']))}": [] for o in outs}
    for x in np.load(inputs_path):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        for o in outs:
            results[f"size_{int(np.prod(o['shape']))}"].append(interp.get_tensor(o["index"]).reshape(-1).copy())
    np.savez(outputs_path, **{k: np.stack(v) for k, v in results.items()})


if __name__ == "__main__":
    main(*sys.argv[1:5])

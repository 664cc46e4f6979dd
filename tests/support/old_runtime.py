"""Run in the oldest supported runtime's venv: score saved inputs with a model.

    python old_runtime.py MODEL.tflite INPUTS.npy OUTPUTS.npy

Uses only numpy and ai_edge_litert so it runs where auricle is not installed.
"""

import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def main(model_path: str, inputs_path: str, outputs_path: str) -> None:
    interp = Interpreter(model_path=model_path, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for x in np.load(inputs_path):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        results.append(interp.get_tensor(out["index"]).copy())
    np.save(outputs_path, np.stack(results))


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""hyperspy_decomposition: low-rank denoising with HyperSpy's decomposition."""

import hyperspy
import hyperspy.api as hs
import numpy as np

from oremda_lab.worker.sdk import PortValue, operator

SIGNALS = {1: hs.signals.Signal1D, 2: hs.signals.Signal2D}


@operator
def hyperspy_decomposition(inputs, params):
    data = inputs["data"].data
    signal_dims, components = int(params["signal_dims"]), int(params["components"])
    if data.ndim < signal_dims + 1:
        raise ValueError(f"need navigation axes before {signal_dims} signal axes, got shape {data.shape}")
    algorithm, poisson = params["algorithm"], bool(params["poisson"])
    # HyperSpy works in place on float data (Poisson scaling): give it its own float64 copy.
    signal = SIGNALS[signal_dims](np.array(data, np.float64))
    options = {"svd_solver": "full"} if algorithm == "SVD" else {"max_iter": 1000}
    signal.decomposition(normalize_poissonian_noise=poisson, algorithm=algorithm, output_dimension=components,
                         print_info=False, **options)  # fmt: skip
    model = signal.get_decomposition_model(components)
    variance = signal.learning_results.explained_variance
    meta = {
        **inputs["data"].meta,
        "components": components,
        "algorithm": algorithm,
        "poisson": poisson,
        "hyperspy": hyperspy.__version__,
    }
    return {
        "data": PortValue(np.asarray(model.data, np.float64), meta),
        "variance": PortValue(np.asarray(variance if variance is not None else [], np.float64), {}),
    }

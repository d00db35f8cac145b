"""Reference EELS background from exspy (run by the peer Python in a subprocess).

Usage: python _exspy_reference.py SPECTRUM.msa START STOP
Prints JSON: for fast in (true, false) the background (spectrum - remove_background)
from START to the end of the axis, and the fitted A and r.
"""

import json
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")

import hyperspy.api as hs  # noqa: E402

path, start, stop = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = hs.load(path, signal_type="EELS")
axis = s.axes_manager.signal_axes[0]
energies = axis.axis
keep = energies >= start
result = {"eloss": energies[keep].tolist()}
for fast in (True, False):
    removed, model = s.remove_background(
        signal_range=(start, stop), background_type="PowerLaw", fast=fast, zero_fill=False, return_model=True
    )
    component = model[0] if hasattr(model, "__getitem__") else model
    background = s.data - removed.data
    result["fast" if fast else "fit"] = {
        "background": np.asarray(background)[keep].tolist(),
        "A": float(component.A.value),
        "r": float(component.r.value),
    }
print(json.dumps(result))

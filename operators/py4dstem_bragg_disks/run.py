"""py4dstem_bragg_disks: py4DSTEM's template-matching Bragg disk detection."""

import os

# find_Bragg_disks draws a progress bar per call; worker logs do not need it (tqdm honours this).
os.environ.setdefault("TQDM_DISABLE", "1")
import numpy as np  # noqa: E402
import py4DSTEM  # noqa: E402

from oremda_lab.worker.sdk import PortValue, operator  # noqa: E402


def template(inputs, params, shape):
    """The cross-correlation kernel: from the connected vacuum probe, else a synthetic one."""
    port = inputs.get("probe")
    if port is not None and port.data is not None:
        probe = np.asarray(port.data, np.float64)
        if probe.shape != shape:
            raise ValueError(f"probe shape {probe.shape} differs from the detector's {shape}")
        return py4DSTEM.Probe(probe).get_kernel(mode="flat")  # origin: the probe's measured centre
    probe = py4DSTEM.Probe.generate_synthetic_probe(float(params["probe_radius"]), float(params["probe_width"]), shape)
    # generate_synthetic_probe centres the disk on (Q_Nx / 2, Q_Ny / 2).
    return probe.get_kernel(mode="flat", origin=(shape[0] / 2, shape[1] / 2))


@operator
def py4dstem_bragg_disks(inputs, params):
    data = inputs["data"].data
    if data.ndim != 4:
        raise ValueError(f"expected 4D-STEM data (scan_y, scan_x, det_y, det_x), got shape {data.shape}")
    datacube = py4DSTEM.DataCube(data=data)
    vectors = datacube.find_Bragg_disks(
        template(inputs, params, data.shape[2:]),
        corrPower=float(params["corr_power"]),
        sigma_cc=float(params["sigma"]),
        subpixel=params["subpixel"],
        upsample_factor=int(params["upsample_factor"]),
        minRelativeIntensity=float(params["min_relative_intensity"]),
        relativeToPeak=int(params["relative_to_peak"]),
        minPeakSpacing=float(params["min_peak_spacing"]),
        edgeBoundary=int(params["edge_boundary"]),
        maxNumPeaks=int(params["max_peaks"]),
    )
    rows = []
    for rx in range(data.shape[0]):
        for ry in range(data.shape[1]):
            found = vectors.raw[rx, ry]
            rows.append(np.column_stack([np.full(len(found.qx), rx), np.full(len(found.qx), ry),
                                         found.qx, found.qy, found.I]))  # fmt: skip
    peaks = np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 5))
    bvm = np.asarray(vectors.histogram(mode="raw").data, np.float64)
    meta = {**inputs["data"].meta, "columns": ["scan_y", "scan_x", "q_y", "q_x", "intensity"],
            "py4DSTEM": py4DSTEM.__version__}  # fmt: skip
    return {"peaks": PortValue(peaks, meta), "bvm": PortValue(bvm, {"py4DSTEM": py4DSTEM.__version__})}

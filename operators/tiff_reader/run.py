"""tiff_reader: a TIFF file (data folder or bytes) -> ndarray, via tifffile."""

import io

import tifffile

from oremda_lab.worker.sdk import PortValue, data_path, operator


@operator
def tiff_reader(inputs, params):
    source = inputs.get("data")
    if source is not None and source.data is not None:
        handle, name = io.BytesIO(bytes(source.data)), source.meta.get("filename", "")
    elif params.get("filename"):
        handle, name = data_path(params["filename"]), params["filename"]
    else:
        raise ValueError("tiff_reader needs a 'filename' param or bytes on its 'data' input")
    with tifffile.TiffFile(handle) as tif:
        series = tif.series[params.get("series", 0)]
        data = series.asarray()
        meta = {"filename": name, "shape": list(data.shape), "dtype": str(data.dtype), "axes_order": series.axes}
    return {"out": PortValue(data, meta)}

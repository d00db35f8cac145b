"""ncem_reader_eels against the MSA text read by hand, rosettasciio, and a file of known contents."""

import numpy as np
import pytest

from oremda_lab.testing import run_operator


def _parse_msa(path):
    """EMSA/MAS (ISO 22029) read by hand: ``#KEYWORD : value`` lines, then one Y value per line."""
    header, values, in_data = {}, [], False
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            key = key.strip().upper()
            in_data = key == "SPECTRUM"
            header[key] = value.strip()
        elif in_data and line.strip():
            values.extend(float(v) for v in line.replace(",", " ").split())
    return header, np.array(values)


def test_msa_equals_the_text_of_the_file(coreloss_msa):
    header, counts = _parse_msa(coreloss_msa)
    assert header["DATATYPE"] == "Y" and len(counts) == float(header["NPOINTS"]) == 2048
    out = run_operator("ncem_reader_eels", params={"filename": coreloss_msa.name}, data_dir=coreloss_msa.parent)
    np.testing.assert_array_equal(out["spec"].data, counts)
    eloss = float(header["OFFSET"]) + float(header["XPERCHAN"]) * np.arange(len(counts))
    np.testing.assert_allclose(out["eloss"].data, eloss, rtol=1e-12)
    assert out["eloss"].meta["units"] == header["XUNITS"] == "eV"


def test_msa_written_with_known_contents(tmp_path):
    counts = np.random.default_rng(2).integers(0, 10_000, 300).astype(float)
    lines = ["#FORMAT      : EMSA/MAS Spectral Data File", "#VERSION     : 1.0", "#TITLE       : known",
             "#NPOINTS     : 300", "#NCOLUMNS    : 1", "#XUNITS      : eV", "#YUNITS      : Counts",
             "#DATATYPE    : Y", "#XPERCHAN    : 0.25", "#OFFSET      : -12.5", "#SIGNALTYPE  : ELS",
             "#SPECTRUM    : Spectral Data Starts Here", *(f"{c:.0f}" for c in counts),
             "#ENDOFDATA   :"]  # fmt: skip
    (tmp_path / "known.msa").write_text("\n".join(lines) + "\n")
    out = run_operator("ncem_reader_eels", params={"filename": "known.msa"}, data_dir=tmp_path)
    np.testing.assert_array_equal(out["spec"].data, counts)
    np.testing.assert_allclose(out["eloss"].data, -12.5 + 0.25 * np.arange(300), rtol=1e-12)
    # The same file after an editor stripped trailing spaces ("#SPECTRUM    :"): rosettasciio
    # then reads no data at all; the operator says so instead of returning an empty spectrum.
    lines[11] = "#SPECTRUM    :"
    (tmp_path / "stripped.msa").write_text("\n".join(lines) + "\n")
    with pytest.raises(RuntimeError, match="no spectrum channels"):
        run_operator("ncem_reader_eels", params={"filename": "stripped.msa"}, data_dir=tmp_path)


def test_msa_equals_rosettasciio(coreloss_msa):
    from rsciio.msa import file_reader

    expected = file_reader(str(coreloss_msa))[0]
    out = run_operator("ncem_reader_eels", params={"filename": coreloss_msa.name}, data_dir=coreloss_msa.parent)
    axis = expected["axes"][0]
    np.testing.assert_array_equal(out["spec"].data, expected["data"])
    np.testing.assert_allclose(out["eloss"].data, axis["offset"] + axis["scale"] * np.arange(axis["size"]))
    assert out["eloss"].data[0] == pytest.approx(360.0) and out["eloss"].data[1] - out["eloss"].data[
        0
    ] == pytest.approx(0.2)
    assert out["eloss"].meta["units"] == "eV"
    assert len(out["eloss"].data) == len(out["spec"].data) == 2048


def test_spectrum_image_is_summed(tmp_path):
    from rsciio.hspy import file_writer

    data = np.arange(2 * 3 * 50, dtype=np.float64).reshape(2, 3, 50)
    axes = [
        {"name": "y", "size": 2, "scale": 1.0, "offset": 0.0, "units": "nm", "navigate": True, "index_in_array": 0},
        {"name": "x", "size": 3, "scale": 1.0, "offset": 0.0, "units": "nm", "navigate": True, "index_in_array": 1},
        {"name": "E", "size": 50, "scale": 0.5, "offset": 100.0, "units": "eV", "navigate": False, "index_in_array": 2},
    ]
    signal = {"data": data, "axes": axes, "metadata": {"General": {"title": "si"}, "Signal": {"signal_type": "EELS"}},
              "original_metadata": {}, "tmp_parameters": {},
              "attributes": {"_lazy": False}, "package_info": {"package": "", "package_version": ""},
              "learning_results": {}, "models": {}}  # fmt: skip
    file_writer(str(tmp_path / "si.hspy"), signal)
    out = run_operator("ncem_reader_eels", params={"filename": "si.hspy"}, data_dir=tmp_path)
    np.testing.assert_allclose(out["spec"].data, data.sum(axis=(0, 1)))
    np.testing.assert_allclose(out["eloss"].data, 100 + 0.5 * np.arange(50))
    assert out["spec"].meta["summed_over_navigation"]

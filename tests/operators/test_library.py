"""The operator library against the upstream contract (ARCHITECTURE.md section 1)."""

import pytest

from oremda_lab.registry import default_registry

# name -> (inputs, outputs, upstream params); ports are data unless listed in TYPES.
UPSTREAM = {
    "ncem_reader": ([], ["image"], ["filename"]),
    "ncem_reader_eels": ([], ["eloss", "spec"], ["filename"]),
    "tiff_reader": (["data"], ["out"], ["filename"]),
    "http_reader": ([], ["data"], ["url", "cache"]),
    "data_container": ([], ["data"], []),
    "crop2d": (["image"], ["image"], ["bounds"]),
    "gaussian_blur": (["image"], ["image"], ["sigma"]),
    "fft2d": (["in"], ["real", "imag"], []),
    "diffractogram": (["image"], ["diffractogram"], []),
    "peak_find": (["image"], ["peaks"], ["threshold", "min_distance"]),
    "peak_opt": (["image", "peaks"], ["peaks", "sigmas"], ["cutout"]),
    "lattice_find": (["image", "peaks"], ["origin", "u", "v", "lattice"], []),
    "unit_cell": (["image", "origin", "u", "v"], ["image"], ["oversample"]),
    "difference": (["a", "b"], ["diff"], []),
    "tile": (["image"], ["image"], ["n_x", "n_y"]),
    "background_fit": (["eloss", "spec"], ["eloss", "background"], ["start", "stop"]),
    "subtract": (["eloss", "spec", "eloss_bg", "background"], ["eloss", "spec"], ["start", "stop"]),
    "plot": (["x", "y"], ["out"], ["label"]),
    "picture": (["in"], ["out"], ["z", "normalize"]),
    "scatter": (["in"], ["out"], ["z", "color", "marker", "size", "label"]),
    "vector": (["origin", "direction"], ["out"], ["z", "color", "label"]),
    "histograms": (["in"], ["out"], ["z", "bins", "label", "color"]),
    "print": (["data"], ["data"], []),
}
TYPES = {
    ("tiff_reader", "input", "data"): "binary",
    ("http_reader", "output", "data"): "binary",
    ("data_container", "output", "data"): "binary",
    **{(name, "output", "out"): "display" for name in ("plot", "picture", "scatter", "vector", "histograms")},
}
DEFAULTS = {
    ("peak_find", "threshold"): 0.5,
    ("peak_find", "min_distance"): 5,
    ("peak_opt", "cutout"): 6,
    ("unit_cell", "oversample"): 1,
    ("http_reader", "cache"): True,
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_upstream_names_ports_params(name):
    spec = default_registry().get(name)
    inputs, outputs, params = UPSTREAM[name]
    assert list(spec.inputs) == inputs
    assert list(spec.outputs) == outputs
    assert set(params) <= set(spec.params)
    for side, ports in (("input", spec.inputs), ("output", spec.outputs)):
        for port in ports.values():
            assert port.type == TYPES.get((name, side, port.name), "data"), (side, port.name)
    for (op, param), value in DEFAULTS.items():
        if op == name:
            assert spec.params[param].default == value


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_every_param_is_typed_for_a_widget(name):
    spec = default_registry().get(name)
    assert spec.description and spec.version != "0"
    for param in spec.params.values():
        assert param.description, param.name
        if param.type in ("number", "integer"):
            assert None not in (param.default, param.min, param.max, param.step), param.name
            assert param.min <= param.default <= param.max, param.name
            assert param.check(param.default) == [], param.name
        if param.type == "enum":
            assert param.default in param.choices, param.name
        if param.default is None:
            assert param.required, f"{param.name}: no default, so it must be required"
    for port in [*spec.inputs.values(), *spec.outputs.values()]:
        assert port.description, port.name


def test_file_params_are_marked():
    registry = default_registry()
    for name in ("tiff_reader", "ncem_reader", "ncem_reader_eels"):
        assert registry.get(name).params["filename"].file
    assert registry.get("http_reader").network
    assert not any(registry.get(name).network for name in UPSTREAM if name != "http_reader")

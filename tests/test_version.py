import json
from importlib.metadata import version
from pathlib import Path

import oremda_lab


def test_one_version_everywhere():
    package_json = json.loads((Path(__file__).parents[1] / "package.json").read_text())
    assert oremda_lab.__version__ == version("oremda-lab") == package_json["version"]

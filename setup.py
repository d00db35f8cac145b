"""oremda-lab: reproducible electron-microscopy pipelines in Jupyter.

Metadata lives in pyproject.toml; this file adds what setuptools cannot declare there:
the operator library and the example pipelines shipped from top-level folders (``operators/``
as ``oremda_operators``, ``pipelines/`` as ``oremda_lab/pipelines``), the Jupyter server
extension's config file, and the widget bundle build.
"""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
BUNDLE = HERE / "oremda_lab" / "widget" / "static" / "editor.js"


class BuildWithWidget(build_py):
    """Build the widget bundle from js/ when it is missing (needs node and npm)."""

    def run(self):
        """Build the bundle first if needed, then copy the package as usual."""
        if not BUNDLE.exists() and (HERE / "package.json").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
            subprocess.run(["npm", "run", "build"], cwd=HERE, check=True)
        super().run()


setup(
    package_dir={"oremda_lab": "oremda_lab", "oremda_lab.pipelines": "pipelines", "oremda_operators": "operators"},
    package_data={
        "oremda_lab": ["spec/*.json", "widget/static/*", "testing_operators/*/*"],
        "oremda_lab.pipelines": ["*.json"],
        "oremda_operators": ["*/*.json", "*/*.py", "*/*.tif", "*/*.txt"],
    },
    # Enables the Jupyter server extension (oremda_lab.widget.server: TCP_NODELAY) wherever it is installed.
    data_files=[("etc/jupyter/jupyter_server_config.d", ["jupyter-config/jupyter_server_config.d/oremda_lab.json"])],
    cmdclass={"build_py": BuildWithWidget},
)

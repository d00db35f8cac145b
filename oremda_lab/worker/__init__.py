"""Runs inside the operator's process or container: numpy and pyarrow only, no Jupyter."""

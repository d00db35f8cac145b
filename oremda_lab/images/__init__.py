"""Operator images without a registry: a shared base root filesystem and thin operator layers.

``oremda-lab build`` (:func:`oremda_lab.images.build.main`) is the entry point.
"""

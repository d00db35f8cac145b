"""The base root filesystem recipe: pinned requirements and a cache key over every input."""

import numpy as np

from oremda_lab.images import rootfs


def test_bare_names_are_pinned_to_the_installed_versions():
    assert rootfs.pinned(["numpy", "scipy>=1", "numpy"]) == sorted({f"numpy=={np.__version__}", "scipy>=1"})


def test_unknown_packages_stay_unpinned():
    assert rootfs.pinned(["surely-not-installed-pkg"]) == ["surely-not-installed-pkg"]


def test_key_changes_with_requirements_and_mirror():
    key = rootfs.rootfs_key(["numpy==2"])
    assert key == rootfs.rootfs_key(["numpy==2"])
    assert key != rootfs.rootfs_key(["numpy==2", "scipy==1"])
    assert key != rootfs.rootfs_key(["numpy==2"], mirror="http://mirror.example/debian")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OREMDA_IMAGE_CACHE", str(tmp_path))
    assert rootfs.cache_dir() == tmp_path


def test_worker_user_is_added(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "etc/group").write_text("root:x:0:\n")
    rootfs._add_user(tmp_path)
    assert "oremda:x:1001:1001:" in (tmp_path / "etc/passwd").read_text()
    assert "oremda:x:1001:" in (tmp_path / "etc/group").read_text()

"""The base root filesystem recipe: a cache key over every input, the worker user."""

import subprocess
import sys

from oremda_lab.images import rootfs


def test_key_changes_with_the_mirror_only():
    assert rootfs.rootfs_key() == rootfs.rootfs_key(rootfs.DEFAULT_MIRROR)
    assert rootfs.rootfs_key() != rootfs.rootfs_key("http://mirror.example/debian")


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


def test_installed_packages_keep_the_test_modules_they_import(tmp_path):
    """numpy 2.2's ``numpy.testing`` imports ``numpy._core.tests._natype``: pruning tests broke images."""
    site = rootfs.install_site(["numpy==2.2.6"], tmp_path / "site")
    code = f"import sys; sys.path.insert(0, {str(site)!r}); import numpy, numpy.testing; print(numpy.__version__)"
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2.2.6"

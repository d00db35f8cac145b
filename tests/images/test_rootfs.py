"""The base root filesystem recipe: a cache key over every input, the worker user."""

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

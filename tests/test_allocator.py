"""mer_lib.allocator: glibc takes the settings, child processes inherit them, a user's own win."""
import os
import platform
import subprocess
import sys

import pytest

from mer_lib import allocator

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the settings are glibc's")


@glibc
def test_glibc_takes_the_settings_and_children_inherit_them(monkeypatch):
    for key in allocator.ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    assert allocator.keep_large_buffers() is True
    assert {k: os.environ[k] for k in allocator.ENVIRONMENT} == allocator.ENVIRONMENT
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MALLOC_MMAP_THRESHOLD_'])"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(allocator.MMAP_THRESHOLD)


@glibc
def test_a_users_own_setting_is_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4194304")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert allocator.keep_large_buffers() is True
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "4194304"
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(allocator.MMAP_THRESHOLD)


def test_without_children_the_environment_is_untouched(monkeypatch):
    for key in allocator.ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    allocator.keep_large_buffers(children=False)
    assert not any(key in os.environ for key in allocator.ENVIRONMENT)

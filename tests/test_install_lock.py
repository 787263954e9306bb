"""tools/install_lock.py: pip's configured package sources reach uv unchanged, and a bad lock path fails early."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_lock", ROOT / "tools" / "install_lock.py")
install_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_lock)


def test_pip_sources_forwards_indexes_find_links_and_constraints():
    listing = "\n".join([
        ":env:.find-links='/opt/wheels'",
        "global.cert='/etc/ssl/certs/ca.crt'",
        "global.constraint='/etc/pip/constraints.txt'",
        "global.extra-index-url='file:///a/simple file:///b/simple'",
        "global.find-links='/opt/wheels'",
        "install.index-url='https://mirror.example/simple'",
        "user.timeout='60'",
    ])
    assert install_lock.pip_sources(listing) == [
        "--find-links", "/opt/wheels",
        "--constraint", "/etc/pip/constraints.txt",
        "--extra-index-url", "file:///a/simple", "--extra-index-url", "file:///b/simple",
        "--index-url", "https://mirror.example/simple",
    ]


def test_pip_sources_empty_config_gives_no_arguments():
    assert install_lock.pip_sources("") == []


def test_missing_lock_is_refused_before_anything_is_created(tmp_path, capsys):
    venv = tmp_path / "venv"
    assert install_lock.main(["--venv", str(venv), "--lock", str(tmp_path / "nope.lock")]) == 2
    assert "lock file" in capsys.readouterr().err and not venv.exists()

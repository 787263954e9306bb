"""`make setup`'s bootstrap reads the DVC settings it would write, so a configured project costs no `dvc config`."""

from pipelines import bootstrap


def test_dvc_config_values_are_read_from_the_project(tmp_path, monkeypatch):
    monkeypatch.setattr(bootstrap, "ROOT", tmp_path)
    assert bootstrap._dvc_config_value("core.analytics") is None  # no .dvc/config yet: bootstrap must write it
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n    no_scm = true\n")
    assert {k: bootstrap._dvc_config_value(k) for k in bootstrap.DVC_CONFIG} == bootstrap.DVC_CONFIG
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = true\n")
    assert bootstrap._dvc_config_value("core.analytics") == "true"
    assert bootstrap._dvc_config_value("core.no_scm") is None
    (tmp_path / ".dvc" / "config").write_text("not an ini file [")
    assert bootstrap._dvc_config_value("core.analytics") is None

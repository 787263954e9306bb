"""Final training: it learns, it logs per-domain weights, it resumes step-for-step, it refuses bad inputs."""

import pandas as pd
import pytest
import torch

from mpnas.models.multipath import load_model
from mpnas.space import Genotype, SearchSpace
from mpnas.loop import decay_groups, warmup_cosine
from mpnas.training.trainer import train_model


def _genotypes(cfg):
    space = SearchSpace.from_config(cfg.space, cfg.data.crop)
    ref = space.reference_genotype()
    other = Genotype.from_strings(["conv_k3", "ir_k5_e2", "zero", "ir_k3_e2_se", "zero"])
    return {"alpha": ref, "beta": other}


class Interrupt(Exception):
    pass


def test_training_lowers_loss_and_writes_model_dir(tiny_cfg, tiny_data, tmp_path):
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(update={"steps": 40, "eval_every": 20})})
    logged = []
    res = train_model(cfg, tiny_data, _genotypes(cfg), tmp_path / "m", progress=False,
                      on_log=lambda step, metrics: logged.append((step, metrics)))
    h = res.history
    assert len(h) == 40 and h["loss"].head(5).mean() > h["loss"].tail(5).mean()
    assert {"weight/alpha", "weight/beta", "train_acc/alpha", "loss/beta", "lr"} <= set(h.columns)
    assert res.best_mean_val > 0.4  # chance is (1/3 + 1/4) / 2 ~ 0.29
    for f in ("model.safetensors", "architecture.json", "history.parquet", "checkpoint.pt", "train_config.yaml",
              "train_metrics.json"):
        assert (tmp_path / "m" / f).is_file(), f
    assert pd.read_parquet(tmp_path / "m" / "history.parquet")["step"].tolist() == list(range(1, 41))
    assert [step for step, _ in logged] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert all("weight/alpha" in metrics and "step" not in metrics for _, metrics in logged)
    loaded = load_model(tmp_path / "m")
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x, "beta"), res.model.cpu()(x, "beta"))


def test_abdp_weights_are_logged_every_step_and_favour_the_harder_domain(tiny_cfg, tiny_data, tmp_path):
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(update={"steps": 20})})
    res = train_model(cfg, tiny_data, _genotypes(cfg), tmp_path / "m", progress=False)
    h = res.history
    w = h[["weight/alpha", "weight/beta"]]
    assert w.notna().all().all() and ((w.mean(axis=1) - 1).abs() < 1e-6).all()
    last = h.iloc[-1]
    acc = h[["train_acc/alpha", "train_acc/beta"]].tail(10).mean()
    harder = "alpha" if acc["train_acc/alpha"] < acc["train_acc/beta"] else "beta"
    easier = "beta" if harder == "alpha" else "alpha"
    assert last[f"weight/{harder}"] > last[f"weight/{easier}"]


def test_resume_equals_uninterrupted_run(tiny_cfg, tiny_data, tmp_path):
    g = _genotypes(tiny_cfg)
    full = train_model(tiny_cfg, tiny_data, g, tmp_path / "full", progress=False)

    def crash_at_6(step, metrics):
        if step == 6:  # the checkpoint of step 4 exists, steps 5-6 are lost as in a crash
            raise Interrupt

    with pytest.raises(Interrupt):
        train_model(tiny_cfg, tiny_data, g, tmp_path / "cut", progress=False, on_log=crash_at_6)
    resumed = train_model(tiny_cfg, tiny_data, g, tmp_path / "cut", resume=True, progress=False)
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    pd.testing.assert_frame_equal(full.history, resumed.history)


def test_early_stopping_keeps_best_weights(tiny_cfg, tiny_data, tmp_path):
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(
        update={"steps": 40, "eval_every": 2, "early_stopping_patience": 1, "lr": 1e-7})})
    res = train_model(cfg, tiny_data, _genotypes(cfg), tmp_path / "m", progress=False)
    assert res.stopped_early and res.steps_done < 40
    assert res.best_mean_val == max(res.history["val_top1_mean"].dropna())


def test_bad_inputs_are_named(tiny_cfg, tiny_data, tmp_path):
    g = _genotypes(tiny_cfg)
    with pytest.raises(ValueError, match="gamma"):
        train_model(tiny_cfg, tiny_data, dict(g, gamma=g["alpha"]), tmp_path / "m", progress=False)
    cfg = tiny_cfg.model_copy(update={"data": tiny_cfg.data.model_copy(update={"domains": ["alpha", "beta"]})})
    with pytest.raises(ValueError, match="cover only"):
        train_model(cfg, tiny_data, {"alpha": g["alpha"]}, tmp_path / "m", progress=False)


def test_schedule_and_weight_decay_groups(tiny_cfg):
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1) and warmup_cosine(9, 100, 10) == 1.0
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5) and warmup_cosine(100, 100, 10) == pytest.approx(0.0)
    from mpnas.models.multipath import MultiPathNet

    space = SearchSpace.from_config(tiny_cfg.space, 16)
    m = MultiPathNet(space, {"a": space.reference_genotype()}, {"a": 3})
    decay, no_decay = decay_groups(m.named_parameters(), 4e-5)
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(p.ndim > 1 and not names[id(p)].startswith("classifiers.") for p in decay["params"])
    assert any(names[id(p)] == "classifiers.a.1.weight" for p in no_decay["params"])


def test_per_domain_affine_with_abdp_trains_and_keeps_weights_under_the_cap(tiny_cfg, tiny_data, tmp_path):
    train = tiny_cfg.train.model_copy(update={"steps": 12, "bn_mode": "per_domain_affine"})
    train.loss_weighting.abdp.cap = 1.2
    train.loss_weighting.abdp.update_every = 2
    cfg = tiny_cfg.model_copy(update={"train": train})
    res = train_model(cfg, tiny_data, _genotypes(cfg), tmp_path / "m", progress=False)
    w = res.history[["weight/alpha", "weight/beta"]]
    assert (w.max(axis=1) <= 1.2 + 1e-9).all() and ((w.mean(axis=1) - 1).abs() < 1e-6).all()
    assert (w != 1.0).any().any()  # the weighting did act
    loaded = load_model(tmp_path / "m")
    assert loaded.bn_mode == "per_domain_affine" and loaded.num_parameters() == res.model.num_parameters()

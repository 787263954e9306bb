"""The evaluation of a grown model marks what add-domain added: metrics.json's `added`, the report's added domain row
and per-node `added` column, and the architecture figure's hatched, domain-edged boxes; a model from `mpnas train`
has none of it. The new paths are forced (not searched) so the expected added nodes are known in advance."""

import json

import pytest

from mpnas.evaluation import figures
from mpnas.evaluation.evaluate import evaluate_model
from mpnas.extend import add_domain
from mpnas.extend.search import AddDomainSearch
from mpnas.data.synthetic import make_synthetic
from mpnas.models.multipath import load_model, node_id
from mpnas.space import Genotype

from .conftest import save_parent

GAMMA = ["conv_k3", "ir_k3_e2", "ir_k3_e1", "ir_k5_e2_se", "ir_k5_e2"]  # two new nodes (layers 2, 4), three reused
DELTA = ["conv_k3", "ir_k5_e2", "zero", "ir_k3_e2", "zero"]  # one new node (layer 1)


def _expected_new(model_dir, genotype):
    parent = load_model(model_dir)
    return {node_id(i, c) for i, c in enumerate(genotype) if c != "zero"} - set(parent.nodes)


def _force(monkeypatch, genotype):
    monkeypatch.setattr(AddDomainSearch, "genotype", lambda self: Genotype.from_strings(genotype))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, add_cfg):
    """parent (alpha, beta) -> + gamma -> + delta, with forced paths; the data holds all four domains."""
    root = tmp_path_factory.mktemp("marks")
    data = make_synthetic(root / "data", {"alpha": 3, "beta": 4, "gamma": 3, "delta": 3}, per_class=8, size=16)
    parent = save_parent(add_cfg, data, root / "parent")
    mp = pytest.MonkeyPatch()
    try:
        expected = {"gamma": _expected_new(parent, GAMMA)}
        _force(mp, GAMMA)
        add_domain(add_cfg, parent, data, "gamma", root / "m2")
        expected["delta"] = _expected_new(root / "m2", DELTA)
        _force(mp, DELTA)
        add_domain(add_cfg, root / "m2", data, "delta", root / "m3")
    finally:
        mp.undo()
    return root, data, parent, expected


def _evaluate(add_cfg, model_dir, data, out):
    cfg = add_cfg.evaluate.model_copy(update={"latency_repeats": 1, "latency_warmup": 0})
    metrics = evaluate_model(model_dir, data, out, cfg)
    return metrics, (out / "report.md").read_text()


def _node_rows(report):
    """{node id: added cell} of the report's per-node table."""
    rows = [line.split("|") for line in report.splitlines() if line.startswith("| `L")]
    return {cells[1].strip().strip("`"): cells[4].strip() for cells in rows}


def test_metrics_and_report_mark_exactly_the_added_nodes_and_domains(chain, add_cfg):
    root, data, _, expected = chain
    assert expected["gamma"] == {"L02/ir_k3_e1", "L04/ir_k5_e2"} and expected["delta"] == {"L01/ir_k5_e2"}
    metrics, report = _evaluate(add_cfg, root / "m3", data, root / "eval_m3")
    assert metrics["added"]["domains"] == ["gamma", "delta"]
    assert metrics["added"]["nodes"] == {**{k: "gamma" for k in expected["gamma"]},
                                         **{k: "delta" for k in expected["delta"]}}
    assert json.loads((root / "eval_m3" / "metrics.json").read_text())["added"] == metrics["added"]
    rows = _node_rows(report)
    assert set(rows) == set(load_model(root / "m3").nodes)  # every node once
    marked = {k: cell for k, cell in rows.items() if cell}
    assert marked == {**{k: "**added** (gamma)" for k in expected["gamma"]},
                      **{k: "**added** (delta)" for k in expected["delta"]}}
    assert "| gamma *(added)* |" in report and "| delta *(added)* |" in report
    assert "| alpha |" in report and "| beta |" in report
    grown = json.loads((root / "m3" / "add_domain.json").read_text())
    assert f"{grown['added_parameters']:,} added parameters" in report


def test_architecture_figure_hatches_the_added_nodes_in_their_domains_colour(chain, monkeypatch, tmp_path):
    root, _, _, expected = chain
    seen = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: seen.setdefault("fig", fig) and path)
    model = load_model(root / "m3")
    figures.architecture_figure(model, tmp_path / "a.png")
    ax = seen["fig"].axes[0]
    boxes = [p for p in ax.patches if isinstance(p, figures.FancyBboxPatch)]
    assert len(boxes) == len(model.nodes)
    hatched = [p for p in boxes if p.get_hatch() == figures.ADDED_HATCH]
    assert len(hatched) == len(expected["gamma"]) + len(expected["delta"])
    colours = figures.domain_colours(model.domains)
    edges = sorted(tuple(round(c, 3) for c in p.get_edgecolor()[:3]) for p in hatched)
    want = sorted(tuple(round(c, 3) for c in colours[d][:3]) for d in ("gamma", "gamma", "delta"))
    assert edges == want
    labels = ax.get_legend().get_texts()
    assert {"gamma (added)", "delta (added)", "added node (add-domain)", "alpha"} <= {t.get_text() for t in labels}


def test_a_trained_model_gets_no_added_marks(chain, add_cfg):
    root, data, parent, _ = chain
    metrics, report = _evaluate(add_cfg, parent, data, root / "eval_parent")
    assert metrics["added"] is None
    assert "added" not in report.lower()

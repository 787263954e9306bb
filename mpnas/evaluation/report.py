"""report.md of an evaluation: per-domain and whole-model tables, decathlon score provenance, sharing, figures."""

from __future__ import annotations

from typing import Optional

from mpnas.models.sharing import sharing_markdown


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _num(v: Optional[float], unit: float = 1.0, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v / unit:,.{digits}f}"


def render_report(m: dict, sharing: dict) -> str:
    dec = m["decathlon"]
    lines = [f"# Evaluation: {m['method']} on {m['dataset']}", "",
             f"Model `{m['model_dir']}` (sha256 `{m['model_hash'][:12]}`), data `{m['data_dir']}` "
             f"(content hash `{str(m['data_hash'])[:12]}`"
             + ("" if m["data_hash_matches_training"] in (None, True) else ", **differs from the training data**")
             + f"). Input {m['input_size']} px, BN mode `{m['bn_mode']}`.", "",
             "## Per domain", "",
             "| domain | classes | top-1 val % | top-1 test % | params (path) | MFLOPs (path) | CPU latency ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for d, v in m["domains"].items():
        lines.append(f"| {d} | {v['num_classes']} | {_pct(v['top1_val'])} | {_pct(v['top1_test'])} | "
                     f"{v['params_path']:,} | {_num(v['flops_path'], 1e6)} | {v['latency_ms_cpu']:.2f} |")
    lines.append(f"| **mean** | | **{_pct(m['mean_top1_val'])}** | **{_pct(m['mean_top1_test'])}** | | "
                 f"{_num(m['flops_mean_path'], 1e6)} | |")
    lat = m["latency"]
    ratio = "" if m["params_ratio"] is None else f" ({m['params_ratio']:.3f} x the reference {m['params_reference']:,.0f})"
    lines += ["", f"Latency: median of {lat['repeats']} batch-1 forwards after {lat['warmup']} warm-up runs, "
              f"torch eager on the CPU with {lat['threads']} threads. FLOPs: torch FlopCounterMode, 2 per "
              "multiply-add (BN, activations, pooling not counted). Val accuracy also selected the training "
              "checkpoint, so it is optimistic; test is the unbiased number.", "",
              "## Whole model", "",
              "| metric | value |", "|---|---:|",
              f"| parameters (unique, shared nodes once) | {m['params_total']:,}{ratio} |",
              f"| FLOPs, sum over paths (one image per domain) | {_num(m['flops_sum_paths'], 1e6)} M |",
              f"| FLOPs, union (each node, head and classifier once) | {_num(m['flops_union'], 1e6)} M |",
              f"| FLOPs, mean path | {_num(m['flops_mean_path'], 1e6)} M |",
              f"| mean Jaccard similarity (off-diagonal) | {_num(m['jaccard_mean_off_diagonal'], 1, 3)} |",
              f"| decathlon score (test) | {_num(m['decathlon_score'], 1, 1)} |",
              f"| decathlon score on val (same E_max) | {_num(dec['score_val'], 1, 1)} |", "",
              f"Decathlon score E_max: {dec['e_max_source']}. The score is n/a when a domain's test split has no "
              "labels.", "", "## Node sharing", "", sharing_markdown(sharing), "## Figures", ""]
    captions = {"architecture.png": "Architecture: layers by blocks used, one colour per domain path; dark nodes are "
                                    "shared, light nodes exclusive.",
                "jaccard.png": "Pairwise Jaccard similarity of the paths over non-zero nodes.",
                "weights.png": "Per-domain loss weights and training-batch accuracy over training."}
    for f in m["figures"]:
        lines += [f"![{f}]({f})", "", captions.get(f, ""), ""]
    return "\n".join(lines).rstrip() + "\n"

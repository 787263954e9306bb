"""report.md of an evaluation: per-domain and whole-model tables, decathlon score provenance, sharing, figures; for a
model grown by `mpnas add-domain`, the added domains and a per-node table marking the nodes they added."""

from __future__ import annotations

from typing import Optional

from mpnas.models.multipath import node_id
from mpnas.models.sharing import sharing_markdown


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _num(v: Optional[float], unit: float = 1.0, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v / unit:,.{digits}f}"


def added_markdown(added: Optional[dict], sharing: dict, params_total: int) -> str:
    """The 'Added by add-domain' section: what each addition brought, then every node with an `added` column."""
    if not added:
        return ""
    lines = ["## Added by add-domain", ""]
    for r in added["records"]:
        new = ", ".join(f"`{k}`" for k in r.get("new_nodes", [])) or "none (its path reuses only existing nodes)"
        params, base = r.get("added_parameters"), r.get("parent_parameters")
        of = f"the parent's {base:,}" if base else f"this model's {params_total:,}"
        pct = None if params is None else 100 * params / (base or params_total)
        share = "" if params is None else f"; {params:,} added parameters ({pct:.1f}% of {of})"
        parent = r.get("parent_weights_sha256")
        lines.append(f"- **{r['domain']}** added to the parent model"
                     + (f" (sha256 `{parent[:12]}`)" if parent else "") + f": new nodes {new}{share}. Every other "
                     "node, the head and the other domains' classifiers and BN rows are the parent's, frozen.")
    lines += ["", "| node | layer | domains | added |", "|---|---|---|---|"]
    nodes = added["nodes"]
    for row in sharing["layers"]:
        for block, domains in sorted(row["blocks"].items()):
            key = node_id(row["index"], block)
            mark = f"**added** ({nodes[key]})" if key in nodes else ""
            lines.append(f"| `{key}` | {row['layer']} | {', '.join(domains)} | {mark} |")
    return "\n".join(lines) + "\n\n"


def render_report(m: dict, sharing: dict) -> str:
    dec = m["decathlon"]
    added = m.get("added")
    added_domains = set(added["domains"]) if added else set()
    lines = [f"# Evaluation: {m['method']} on {m['dataset']}", "",
             f"Model `{m['model_dir']}` (sha256 `{m['model_hash'][:12]}`), data `{m['data_dir']}` "
             f"(content hash `{str(m['data_hash'])[:12]}`"
             + ("" if m["data_hash_matches_training"] in (None, True) else ", **differs from the training data**")
             + f"). Input {m['input_size']} px, BN mode `{m['bn_mode']}`."
             + (f" Domains marked *(added)* were added by `mpnas add-domain` ({', '.join(sorted(added_domains))})."
                if added_domains else ""), "",
             "## Per domain", "",
             "| domain | classes | top-1 val % | top-1 test % | params (path) | MFLOPs (path) | CPU latency ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for d, v in m["domains"].items():
        name = f"{d} *(added)*" if d in added_domains else d
        lines.append(f"| {name} | {v['num_classes']} | {_pct(v['top1_val'])} | {_pct(v['top1_test'])} | "
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
              "labels.", "", "## Node sharing", "", sharing_markdown(sharing),
              added_markdown(added, sharing, m["params_total"]) + "## Figures", "",
              *_figure_lines(m["figures"], bool(added_domains))]
    return "\n".join(lines).rstrip() + "\n"


def _figure_lines(figures: list[str], added: bool) -> list[str]:
    captions = {"architecture.png": "Architecture: layers by blocks used, one colour per domain path; dark nodes are "
                                    "shared, light nodes exclusive"
                                    + ("; hatched nodes with a coloured edge were added by add-domain (edge colour: "
                                       "the domain they were added for)." if added else "."),
                "jaccard.png": "Pairwise Jaccard similarity of the paths over non-zero nodes.",
                "weights.png": "Per-domain loss weights and training-batch accuracy over training."}
    return [line for f in figures for line in (f"![{f}]({f})", "", captions.get(f, ""), "")]

"""export_report.md: the parity, accuracy, size and latency tables of an export report, for humans."""

from __future__ import annotations


def _fmt(v: object, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def render_markdown(report: dict) -> str:
    t = report["thresholds"]
    lines = [f"# Export report (mpnas {report['mpnas_version']})", "",
             f"Source model: `{report['source_model'].get('dir', '?')}` (model.safetensors sha256 "
             f"`{report['source_model']['sha256'][:16]}...`)", "",
             f"**Parity: {'OK' if report['parity_ok'] else 'FAILED'}** (fp32 exports vs eager PyTorch: top-1 "
             f"agreement >= {t['parity_min_agreement']}, max |logit diff| <= {t['parity_atol']})", "",
             "## Parity and accuracy per domain", "",
             "| domain | split | images | runtime | top-1 agreement | max abs logit diff | max abs logit | ok | accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d, row in report["domains"].items():
        acc = row["accuracy"]
        lines.append(f"| {d} | {row['split']} | {row['images']} | eager | - | - | - | - | {_fmt(acc.get('eager'))} |")
        for name, p in row["parity"].items():
            ok = "-" if p["ok"] is None else ("yes" if p["ok"] else "**NO**")
            lines.append(f"| {d} | {row['split']} | {row['images']} | {name} | {p['agreement']:.4f} | "
                         f"{p['max_abs_diff']:.2e} | {p['max_abs_logit']:.2e} | {ok} | {_fmt(acc.get(name))} |")
    runtimes = sorted({n for row in report["domains"].values() for n in row["latency_ms"]})
    lines += ["", f"## Latency (batch {report['latency']['batch']}, median of {report['latency']['repeats']} runs, "
              f"ms, {report['latency']['torch_threads']} torch threads)", "",
              "| domain | " + " | ".join(runtimes) + " |", "|---" * (len(runtimes) + 1) + "|"]
    for d, row in report["domains"].items():
        lines.append(f"| {d} | " + " | ".join(_fmt(row["latency_ms"].get(n), ".3f") for n in runtimes) + " |")
    lines += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    lines += [f"| {f} | {b:,} |" for f, b in report["file_bytes"].items()]
    s = report.get("sharing")
    if s:
        lines += ["", "## Weight sharing in the .pte", "",
                  f"One .pte with every domain's method: {s['combined_pte_bytes']:,} B. Storing each shared weight "
                  f"once saves {s['saved_bytes']:,} B against one file per domain "
                  f"(combined / separate {s['combined_over_separate']:.3f}); measured {s['how']}. "
                  f"The fp32 parameters the domains share account for {s['shared_weight_bytes']:,} B.", ""]
        t = s["constant_tables"]
        per_file = s.get("single_method_pte_bytes", {})
        lines += [f"Constant tables: {t['unique_constant_bytes']:,} B stored once, "
                  f"{sum(t['method_constant_bytes'].values()):,} B summed over methods.", "",
                  "| domain | constant bytes its method uses |" + (" single-method .pte bytes |" if per_file else ""),
                  "|---|---|" + ("---|" if per_file else "")]
        lines += [f"| {d} | {b:,} |" + (f" {per_file[d]:,} |" if per_file else "")
                  for d, b in t["method_constant_bytes"].items()]
        q = s.get("int8_constant_tables")
        if q:
            lines += ["", f"int8 .pte: {q['unique_constant_bytes']:,} B of constants stored once, "
                          f"{q['saved_bytes']:,} B saved against one file per domain (constant tables)."]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"

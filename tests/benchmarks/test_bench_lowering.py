"""The lowering benchmark's BENCHMARKS.md section states the command, both timings, the ratio and the byte check."""

from __future__ import annotations

from benchmarks.bench_lowering import render_section


def test_section_names_command_timings_ratio_and_byte_check():
    s = {"model": "m", "programs": {"fp32": 10}, "workers": 2, "serial_s": 100.0, "parallel_s": 60.0,
         "speedup": 1.67, "bytes_equal": True, "pte_bytes": {"fp32": 1}, "load_start": 0.1, "load_end": 1.9}
    text = render_section(s, ["--int8"])
    assert "`python -m benchmarks.bench_lowering --int8`" in text
    assert "| one process | 100.0 |" in text and "| shared among 2 processes" in text
    assert "**1.67x**" in text and "| .pte bytes identical | True |" in text and "fp32 (10 methods)" in text

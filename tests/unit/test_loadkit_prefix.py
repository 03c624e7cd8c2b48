"""loadkit/prefix.py (scripts/prefix-cache): the engine counters it reads and the summary it prints."""

from __future__ import annotations

from loadkit import prefix

METRICS = """# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="SmolLM2-135M-Instruct"} 1200.0
vllm:prefix_cache_queries_created{engine="0",model_name="SmolLM2-135M-Instruct"} 1.7e+09
vllm:prefix_cache_hits_total{engine="0",model_name="SmolLM2-135M-Instruct"} 900.0
"""


def test_counters_are_read_without_the_created_series() -> None:
    assert [float(x) for x in prefix.QUERIES.findall(METRICS)] == [1200.0]
    assert [float(x) for x in prefix.HITS.findall(METRICS)] == [900.0]


def test_summary_gives_the_hit_rate_per_engine_and_overall() -> None:
    mode = prefix.Mode("sticky", latencies=[0.5, 1.0, 1.5], prompt_tokens=300, completion_tokens=30, wall=3.0)
    mode.per_engine = [(90.0, 100.0), (10.0, 100.0)]
    mode.hits, mode.queries = 100.0, 200.0
    out = mode.summary()
    assert out["hit_rate"] == 0.5 and out["per_engine_hit_rate"] == [0.9, 0.1]
    assert out["latency_p50_s"] == 1.0 and out["prompt_tokens_per_s"] == 100.0


def test_documents_differ_by_seed_and_repeat_for_the_same_one() -> None:
    assert prefix.document("a", 50) == prefix.document("a", 50) != prefix.document("b", 50)

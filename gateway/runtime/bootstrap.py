"""The pipeline from settings: what the worker, the benchmark and the tools decide with.

Loading reads the PKI folder, the gateway's signing key and the policy file, so a broken file
fails here, before anything touches Kafka. Nothing runs at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from gateway.core.pipeline import Pipeline, PipelineConfig
from gateway.core.policy import load_policy
from gateway.core.profile import Limits
from gateway.core.replay import ReplayWindow
from gateway.names import GATEWAY_OWNER
from gateway.settings import Settings
from gateway.trust.ca import load_signing_key
from gateway.trust.x509 import X509TrustStore
from schemas.registry import REGISTRY


def pipeline_config(
    settings: Settings,
    trust: X509TrustStore,
    key_partition: Callable[[bytes], int] | None = None,
) -> PipelineConfig:
    """Everything the decision depends on, loaded from settings: keys, policy, limits."""
    return PipelineConfig(
        topics=settings.topics,
        trust=trust,
        registry=REGISTRY,
        policy=load_policy(settings.policy_file, REGISTRY),
        gateway_key=load_signing_key(settings.pki_dir, GATEWAY_OWNER, embed=True),
        max_record_bytes=settings.max_record_bytes,
        limits=Limits(settings.max_json_depth, settings.max_string_chars),
        max_event_age=timedelta(seconds=settings.max_event_age_seconds),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        key_partition=key_partition,
    )


def memory_pipeline(settings: Settings) -> Pipeline:
    """A pipeline whose replay window lives in memory (benchmarks, tools, tests)."""
    window = ReplayWindow(
        timedelta(seconds=settings.replay_window_seconds), settings.replay_max_entries
    )
    return Pipeline(
        pipeline_config(settings, X509TrustStore.from_directory(settings.pki_dir)), window
    )

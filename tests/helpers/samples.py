"""Tiny datasets for tests: small enough for unit tests, large enough for every split to hold both classes."""

from __future__ import annotations

from realfake.data.sample.config import Heldout, SampleConfig, Sizes

#: The session's shared tiny sample (per-class sizes 12/6/6).
TINY = SampleConfig(seed=7, sizes=Sizes(train=12, valid=6, test=6))


def tiny(**kw) -> SampleConfig:
    """:data:`TINY` with some fields replaced (``sizes=Sizes(...)``, ``heldout=Heldout(...)``, ``seed=...``)."""
    from dataclasses import replace

    return replace(TINY, **kw)


def with_heldout(cfg: SampleConfig, size: int, families: tuple[str, ...] = ("nearest",)) -> SampleConfig:
    """``cfg`` with held-out ``families`` of ``size`` images each."""
    from dataclasses import replace

    return replace(cfg, heldout=Heldout(size=size, families=families))


def sample_params(cfg: SampleConfig = TINY, **overrides) -> dict:
    """``cfg`` as params.yaml's ``data.sample`` mapping, with top-level keys replaced."""
    from realfake.config import as_dict

    return {**as_dict(cfg), **overrides}

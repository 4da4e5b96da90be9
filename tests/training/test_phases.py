"""Phases: each phase's seconds and peak memory, the train stage's record of where its time goes."""

from __future__ import annotations

import time

import numpy as np

from realfake.training.phases import Phases


def test_each_phase_gets_its_own_time_and_peak_memory():
    phases = Phases()
    with phases("big"):
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        block.sum()
        del block
    with phases("small"):
        time.sleep(0.05)
    with phases("small"):  # a phase run twice adds up
        time.sleep(0.05)
    assert phases.resets  # Linux lets the process reset its high-water mark, so each peak is the phase's own
    assert phases.peak_mb["big"] - phases.peak_mb["small"] > 250, phases.peak_mb
    assert phases.rise_mb["big"] > 250 and phases.rise_mb["small"] < 50, phases.rise_mb
    assert phases.seconds["small"] >= 0.1 and list(phases.seconds) == ["big", "small"]
    m = phases.metrics()
    assert set(m) == {f"phase/{n}_{k}" for n in ("big", "small") for k in ("seconds", "peak_mb", "rise_mb")}
    lines = []
    phases.report(lines.append)
    assert len(lines) == 2 and lines[0].startswith("train: phase big:") and "MiB" in lines[0]


def test_timed_counts_the_making_of_each_item_not_the_work_on_it():
    def slow_items():
        for i in range(3):
            time.sleep(0.05)
            yield i

    phases = Phases()
    got = []
    for i in phases.timed(slow_items(), "make"):
        with phases("use"):
            got.append(i)
    assert got == [0, 1, 2] and phases.seconds["make"] >= 0.15 and phases.seconds["use"] < 0.05

"""Weeks 4 and 7 theory: KV block fragmentation, static-batch padding waste and occupancy."""

import pytest

from inferlab import theory


def test_memory_waste_last_block_fragmentation():
    # 100 tokens in blocks of 32: 4 blocks = 128 held, 28 wasted; 64 tokens: exact fit
    assert theory.memory_waste([100], 32) == pytest.approx(28 / 128)
    assert theory.memory_waste([64], 32) == 0.0
    assert theory.memory_waste([100, 64], 32) == pytest.approx(28 / 192)
    # larger blocks waste more on the same lengths
    lens = [37, 250, 513, 1000, 77]
    w = [theory.memory_waste(lens, b) for b in (16, 32, 64, 128)]
    assert w == sorted(w) and w[0] < w[-1]
    # block size 1: nothing wasted
    assert theory.memory_waste(lens, 1) == 0.0


def test_memory_waste_rejects_nonsense():
    with pytest.raises(ValueError):
        theory.memory_waste([10], 0)
    with pytest.raises(ValueError):
        theory.memory_waste([], 16)
    with pytest.raises(ValueError):
        theory.memory_waste([-1, 10], 16)


def test_padding_waste_course_list():
    # the course's variable list {16, 32, 64, 256, 512} in one batch of 5 runs to 512
    outs = [16, 32, 64, 256, 512]
    assert theory.padding_waste(outs) == pytest.approx(1 - 880 / (5 * 512))
    # a uniform batch wastes nothing; a partial batch counted against B=16 wastes the empty rows too
    assert theory.padding_waste([128] * 16) == 0.0
    assert theory.padding_waste([128] * 8, 16) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        theory.padding_waste([1, 2, 3], 2)
    with pytest.raises(ValueError):
        theory.padding_waste([])


def test_batches_padding_waste_cuts_in_order():
    outs = [16, 512, 16, 512]
    # batches of 2: each (16, 512) -> 1 - 528/1024; batches of 4: same ratio
    assert theory.batches_padding_waste(outs, 2) == pytest.approx(1 - 528 / 1024)
    # sorted into like batches: no waste
    assert theory.batches_padding_waste([16, 16, 512, 512], 2) == 0.0
    # a last partial batch counts its own rows
    assert theory.batches_padding_waste([10, 10, 5], 2) == pytest.approx(1 - 25 / (20 + 5))


def test_static_occupancy_counts_unfinished_rows():
    assert theory.static_occupancy([1, 3, 2]) == [3, 2, 1]
    occ = theory.static_occupancy([16, 32, 64, 256, 512])
    assert len(occ) == 512 and occ[0] == 5 and occ[16] == 4 and occ[-1] == 1
    # the occupancy integrates to the useful tokens
    assert sum(occ) == 16 + 32 + 64 + 256 + 512
    assert theory.static_occupancy([]) == []

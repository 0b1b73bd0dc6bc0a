import pytest
import torch

from rnnkit.data.streams import ConsecutiveBatches, CorpusTooShort, RandomBatches


def test_consecutive_streams_continue_and_targets_shift():
    data = torch.arange(1000).to(torch.int16)
    b = ConsecutiveBatches(data, batch_size=4, seq_len=7, random_offset=False)
    batches = [next(b) for _ in range(b.steps_in_epoch)]
    assert batches[0].reset and not batches[1].reset
    for k in range(len(batches) - 1):
        x, nxt = batches[k].x, batches[k + 1].x
        # stream i of batch k+1 starts where stream i of batch k stopped
        assert torch.equal(nxt[:, 0], batches[k].y[:, -1])
        assert torch.equal(nxt[:, 0], x[:, -1] + 1)
    for batch in batches:
        assert batch.x.dtype == torch.int64
        assert torch.equal(batch.y[:, :-1], batch.x[:, 1:])          # targets: inputs shifted by one
    # the streams tile the text: row i starts at i * L
    length = (len(data) - 1) // 4
    assert [int(r) for r in batches[0].x[:, 0]] == [i * length for i in range(4)]


def test_new_epoch_resets_state_and_moves_the_cut():
    data = torch.arange(500).to(torch.int16)
    b = ConsecutiveBatches(data, batch_size=3, seq_len=10, seed=1)
    first = [next(b) for _ in range(b.steps_in_epoch)]
    again = next(b)
    assert b.epoch == 1 and again.reset
    assert torch.equal(again.y[:, :-1], again.x[:, 1:])
    assert first[0].x[0, 0] == 0


def test_consecutive_resume_gives_the_same_batches():
    data = (torch.arange(2000) * 7 % 61).to(torch.uint8)
    a = ConsecutiveBatches(data, 5, 9, seed=3)
    for _ in range(70):
        next(a)
    state = a.state_dict()
    expected = [next(a).x for _ in range(60)]
    b = ConsecutiveBatches(data, 5, 9, seed=3)
    b.load_state_dict(state)
    assert all(torch.equal(e, next(b).x) for e in expected)


def test_random_chunks_are_windows_of_the_text_and_resume():
    data = torch.arange(300).to(torch.int16)
    r = RandomBatches(data, 8, 12, seed=0)
    batch = next(r)
    assert batch.reset and batch.x.shape == (8, 12)
    assert torch.equal(batch.x[:, 1:] - batch.x[:, :-1], torch.ones(8, 11, dtype=torch.long))
    assert torch.equal(batch.y, batch.x + 1)
    state = r.state_dict()
    expected = next(r).x
    r2 = RandomBatches(data, 8, 12, seed=0)
    r2.load_state_dict(state)
    assert torch.equal(next(r2).x, expected)


def test_too_short_corpus_names_the_numbers_and_flags():
    with pytest.raises(CorpusTooShort, match=r"--batch-size 64 x --seq-len 100"):
        ConsecutiveBatches(torch.zeros(500, dtype=torch.uint8), 64, 100)
    with pytest.raises(CorpusTooShort, match="--seq-len"):
        RandomBatches(torch.zeros(5, dtype=torch.uint8), 4, 10)


def test_fixed_grid_serves_each_grid_chunk_once_per_epoch_and_resumes():
    """d2l's data_iter_random (seed 001): non-overlapping chunks at 0, T, 2T, ..., shuffled per epoch."""
    data = torch.arange(101, dtype=torch.int64)               # 100 targets: chunks 0..9 of T = 10
    r = RandomBatches(data, 3, 10, seed=0, fixed_grid=True)
    assert r.steps_per_epoch == 3                               # 10 chunks // 3: the leftover chunk is dropped
    for epoch in range(3):
        starts = [int(x) for _ in range(3) for x in next(r).x[:, 0]]
        assert len(set(starts)) == 9 and all(s % 10 == 0 for s in starts)
    b = next(r)
    assert torch.equal(b.y, b.x + 1) and b.reset
    state = r.state_dict()
    expected = [next(r).x for _ in range(4)]                    # crosses an epoch boundary
    r2 = RandomBatches(data, 3, 10, seed=0, fixed_grid=True)
    r2.load_state_dict(state)
    assert all(torch.equal(next(r2).x, e) for e in expected)


def test_fixed_grid_consecutive_starts_every_epoch_at_offset_zero():
    from rnnkit.data.streams import make_batches
    c = make_batches("consecutive", torch.arange(200, dtype=torch.int64), 4, 5, seed=0, fixed_grid=True)
    firsts = []
    for _ in range(3 * c.steps_in_epoch):
        b = next(c)
        if b.reset:
            firsts.append(int(b.x[0, 0]))
    assert firsts == [0, 0, 0]

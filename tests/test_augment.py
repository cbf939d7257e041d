"Augmentation invariants (property-based) and seeded reproducibility"
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from smidilab.core import NoteTable, SmidiError
from smidilab.augment import (PLAYABLE, allowed_shifts, augment_piece, change_tempo, change_velocity, choose_section,
                              choose_transpositions, modulate_section, section_boundaries, transpose)

@st.composite
def tables(draw, instrument=st.sampled_from(['piano', 'guitar', 'bass'])):
    inst = draw(instrument)
    lo, hi = PLAYABLE[inst]
    n = draw(st.integers(1, 40))
    ints = lambda a, b: st.lists(st.integers(a, b), min_size=n, max_size=n)
    return NoteTable(pitch=draw(ints(lo, hi)), velocity=draw(ints(1, 127)), onset=draw(ints(0, 3000)),
                     duration=draw(ints(0, 400)), bend=draw(ints(0, 45)), instrument=inst)

def test_tempo_hand_computed():
    notes = NoteTable(pitch=[60, 62, 64], velocity=[80] * 3, onset=[0, 10, 15], duration=[10, 5, 5])
    slow = change_tempo(notes, 1.5)  # offsets 15, 22.5 -> 23, 30; onsets 0, 15, 22.5 -> 23
    assert slow.onset.tolist() == [0, 15, 23] and slow.duration.tolist() == [15, 8, 7] and slow.end == 30
    assert change_tempo(notes, 0.5).duration.tolist() == [5, 3, 2]

@settings(max_examples=60, deadline=None)
@given(tables(), st.floats(0.5, 2.0))
def test_tempo_invariants(notes, factor):
    factor = round(factor, 2)
    out = change_tempo(notes, factor)
    assert len(out) == len(notes)
    assert (np.abs(out.duration - notes.duration * factor) <= 1).all()
    assert abs(int(out.duration.sum()) - float(notes.duration.sum()) * factor) <= len(notes)
    assert abs(out.end - notes.end * factor) <= 1 and out.end >= (out.onset + out.duration).max()
    assert (np.diff(out.onset[np.argsort(notes.onset, kind='stable')]) >= 0).all()  # order kept
    for c in ('pitch', 'velocity', 'bend'): assert getattr(out, c).tolist() == getattr(notes, c).tolist()
    assert ((notes.duration == 0) | (out.duration >= 1)).all()

@settings(max_examples=60, deadline=None)
@given(tables())
def test_transpose_stays_playable_and_keeps_bends(notes):
    lo, hi = PLAYABLE[notes.instrument]
    for k in allowed_shifts(notes):
        out = transpose(notes, k)
        assert lo <= out.pitch.min() and out.pitch.max() <= hi
        assert out.bend.tolist() == notes.bend.tolist() and len(out) == len(notes)
    ks = choose_transpositions(notes, 3, np.random.default_rng(0))
    assert 0 not in ks and len(set(ks)) == len(ks) and set(ks) <= set(allowed_shifts(notes))

def test_transpose_out_of_range_is_an_error():
    with pytest.raises(SmidiError, match='pitch 128'):
        transpose(NoteTable(pitch=[120], velocity=[80], onset=[0], duration=[1]), 8)

@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(0, 10**6))
def test_modulated_section_is_contiguous_between_boundaries(notes, seed):
    start, stop = choose_section(notes, np.random.default_rng(seed))
    bounds = section_boundaries(notes).tolist()
    assert start in bounds and stop in bounds and start < stop
    ks = [k for k in allowed_shifts(notes) if k]
    assume(ks)
    k = ks[seed % len(ks)]
    out = modulate_section(notes, k, (start, stop))
    moved = out.pitch != notes.pitch
    assert moved.tolist() == ((notes.onset >= start) & (notes.onset < stop)).tolist()

@settings(max_examples=60, deadline=None)
@given(tables(), st.floats(0.3, 2.0), st.integers(0, 10))
def test_velocity_in_range(notes, scale, jitter):
    out = change_velocity(notes, scale, jitter, np.random.default_rng(1))
    assert out.velocity.min() >= 1 and out.velocity.max() <= 127
    expected = np.clip(np.rint(notes.velocity * scale), 1, 127)
    assert (np.abs(out.velocity - expected) <= jitter).all()

@settings(max_examples=40, deadline=None)
@given(tables(), st.integers(0, 2**32 - 1))
def test_augment_piece_invariants_and_reproducibility(notes, seed):
    copies = augment_piece(notes, 3, seed=seed)
    again = augment_piece(notes, 3, seed=seed)
    assert [d for _, d in copies] == [d for _, d in again] and all(a == b for (a, _), (b, _) in zip(copies, again))
    lo, hi = PLAYABLE[notes.instrument]
    lo, hi = min(lo, notes.pitch.min()), max(hi, notes.pitch.max())
    moved = [d['transpose'] for _, d in copies if d['transpose']]
    assert len(copies) == 3 and len(set(moved)) == len(moved)
    assert len(moved) == min(3, len([k for k in allowed_shifts(notes) if k]))
    for copy, d in copies:
        assert len(copy) == len(notes) and copy.bend.tolist() == notes.bend.tolist()
        assert lo <= copy.pitch.min() and copy.pitch.max() <= hi
        assert 1 <= copy.velocity.min() and copy.velocity.max() <= 127
        assert 0.9 <= d['tempo'] <= 1.1 and abs(copy.end - notes.end * d['tempo']) <= 1

def test_seeds_differ():
    notes = NoteTable(pitch=np.arange(50, 70), velocity=[80] * 20, onset=np.arange(20) * 48, duration=[48] * 20)
    descs = {str([d for _, d in augment_piece(notes, 3, seed=s)]) for s in range(5)}
    assert len(descs) == 5

"Property-based and fixture tests of the Simplified MIDI codec."
import json
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
import re
from smidilab.core import NoteTable, canonical_order
from smidilab.codec import (notes_to_text, text_to_notes, parse_text, convert_dialect, quantize_bend,
                            dequantize_bend, ParseError, fit_to_bounds, tick_bound)
from conftest import SEED, need


@st.composite
def note_tables(draw, max_notes=60, bends=None, curves=False):
    n = draw(st.integers(0, max_notes))
    ints = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=n, max_size=n)
    gaps = draw(ints(0, 400))
    # chords, touching and overlapping same-pitch repeats come from small gaps and a narrow pitch range
    pitch = draw(st.one_of(ints(0, 127), ints(60, 62)))
    bent = draw(st.booleans()) if bends is None else bends
    bend = draw(ints(0, 45)) if bent else None
    curve = None
    if bent and curves:
        curve = draw(st.lists(st.one_of(st.none(), st.lists(st.integers(0, 45), min_size=2, max_size=6).map(tuple)),
                              min_size=n, max_size=n))
        bend = [b if c is None else int(np.asarray(c)[np.argmax(np.abs(np.asarray(c) - 23))]) for b, c in zip(bend, curve)]
    onset = np.cumsum([0] + gaps[:-1]) if n else []
    duration = draw(ints(0, 2000))
    extra = draw(st.integers(0, 500))
    end = int(max(np.add(onset, duration))) + extra if n else 0
    return NoteTable(pitch=pitch, velocity=draw(ints(1, 127)), onset=onset, duration=duration, bend=bend,
                     curve=curve, end=end, instrument='guitar' if bent else 'piano')


@given(note_tables())
@settings(max_examples=300, deadline=None)
def test_paper_text_roundtrip(notes):
    text = notes_to_text(notes)
    back = text_to_notes(text, instrument=notes.instrument)
    assert back == notes
    assert notes_to_text(back) == text


@given(note_tables(bends=True, curves=True))
@settings(max_examples=200, deadline=None)
def test_curves_roundtrip_both_dialects(notes):
    for dialect in ('paper', 'compact'):
        text = notes_to_text(notes, curves=True, dialect=dialect)
        assert text_to_notes(text, dialect=dialect, instrument='guitar') == notes


@given(note_tables())
@settings(max_examples=200, deadline=None)
def test_dialects_convert_losslessly(notes):
    paper = notes_to_text(notes)
    compact = convert_dialect(paper, 'compact')
    assert text_to_notes(compact, dialect='compact') == notes
    assert convert_dialect(compact, 'paper', source='compact', instrument=notes.instrument) == paper


@given(st.text(max_size=300))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_lenient_parser_never_raises(text):
    for dialect in ('paper', 'compact', 'decomposed'):
        notes, report = parse_text(text, dialect=dialect)
        assert len(notes) == report.notes


note_like = st.lists(st.sampled_from(['p', 'v', 'd', 't', 'b', ':', '-', ' ', '0', '1', '6', '9', '12', '128', '\n']),
                     max_size=80).map(''.join)


@given(note_like)
@settings(max_examples=500, deadline=None)
def test_lenient_keeps_exactly_the_valid_tokens(text):
    "Every kept note is a token that parses strictly on its own; every dropped token fails strictly"
    notes, report = parse_text(text)
    tokens = text.split()
    assert report.notes + len(report.dropped) == len(tokens)
    for issue in report.dropped:
        with pytest.raises(ParseError):
            text_to_notes(issue.token)


gap = st.integers(0, 500).map(str)
mixed_tokens = st.lists(st.one_of(
    st.tuples(st.integers(0, 127), st.integers(1, 127), gap, gap).map(lambda x: 'p%d:v%d:d%s:t%s' % x),   # valid
    st.tuples(gap, gap).map(lambda x: 'p60:v0:d%s:t%s' % x),                                              # velocity 0
    st.tuples(gap, st.integers(46, 99)).map(lambda x: 'p60:v80:d96:t%s:b%d' % x),                         # bend 99
    st.sampled_from(['garbage', 'p61:vX', 't', 'p60:v80:d96:t', 't007'])), max_size=12).map(' '.join)


@given(st.one_of(note_like, mixed_tokens))
@settings(max_examples=300, deadline=None)
def test_dropped_tokens_keep_a_readable_gap(text):
    "A kept note's onset is the sum of the gaps before it: each token's own t, or a dropped token's readable t"
    notes, report = parse_text(text)
    at, onsets = 0, []
    for tok in text.split():
        try: one = text_to_notes(tok)
        except ParseError:
            m = re.search(r'(?:^|:)t(0|[1-9][0-9]{0,11})(?=:|$)', tok)
            at += int(m.group(1)) if m and int(m.group(1)) <= tick_bound() else 0
        else: onsets.append(at); at += one.end
    first = onsets[0] if onsets else 0
    assert notes.onset.tolist() == [o - first for o in onsets] and notes.end == (at - first if onsets else 0)


@given(note_tables(max_notes=20), st.lists(st.sampled_from(['\ufeff', '\u200b', '\u200d', '\u2060', ' ']), min_size=1, max_size=3))
@settings(max_examples=100, deadline=None)
def test_invisible_characters_separate_notes(notes, marks):
    text = notes_to_text(notes)
    hidden = ''.join(marks).join(text.split(' ')).join(['\ufeff', ''])
    assert text_to_notes(hidden, instrument=notes.instrument) == text_to_notes(text, instrument=notes.instrument)


@given(st.integers(0, 30), st.data())
@settings(max_examples=100, deadline=None)
def test_canonical_order_is_the_lexicographic_order(n, data):
    "The one-key sort of canonical_order equals sorting column by column, for any values"
    col = lambda lo, hi: np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), np.int64)
    big = data.draw(st.sampled_from([3, 500, 10**12, 2**61]))
    notes = NoteTable(pitch=col(-2, 130), velocity=col(0, 130), onset=col(0, big), duration=col(0, big), bend=col(0, 70))
    expected = np.lexsort((notes.bend, notes.velocity, notes.duration, -notes.pitch, notes.onset))
    assert canonical_order(notes).tolist() == expected.tolist()


@given(note_tables(max_notes=20), st.integers(1, 10**9), st.integers(1, 10**9))
@settings(max_examples=100, deadline=None)
def test_encoding_never_writes_what_decoding_refuses(notes, far, long):
    "Stretched far past the one-hour bound, a table is cut to it, counted, and its text parses strictly"
    if not len(notes): return
    notes = NoteTable(pitch=notes.pitch, velocity=notes.velocity, onset=notes.onset * far, duration=notes.duration + long,
                      bend=notes.bend, end=int(notes.end) * far + long)
    fitted, cut = fit_to_bounds(notes)
    bound = tick_bound()
    assert cut.get('durations_clamped', 0) == int((notes.duration > bound).sum())
    assert fitted.duration.max() <= bound and np.diff(np.append(fitted.onset, fitted.end)).max(initial=0) <= bound
    assert len(text_to_notes(notes_to_text(fitted))) == len(notes)
    if not cut: assert fitted == notes


def test_bend_quantizer_every_value():
    x = np.arange(16384)
    b = quantize_bend(x)
    assert b.min() == 0 and b.max() == 45 and np.all(np.diff(b) >= 0)
    assert quantize_bend(8192) == 23
    step = np.where(x < 7680, 512, np.where(x < 8704, 64, 512))
    assert np.all(np.abs(dequantize_bend(b) - x) < step)


def test_reference_jsonl_parses_strictly():
    "All 1084 prompt/response pairs of the study's test split parse strictly: 192,752 notes in all (768 ticks/s)"
    rows = [json.loads(l) for l in need(SEED / 'test.jsonl').read_text().splitlines()]
    assert len(rows) == 1084
    total = sum(len(text_to_notes(r[k], ticks_per_second=768)) for r in rows for k in ('prompt', 'response'))
    assert total == 192_752


def test_reference_generation_parses_leniently():
    text = need(SEED / 'generated_example.txt').read_text()
    notes, report = parse_text(text, ticks_per_second=768)
    assert len(notes) == len(text.split()) - len(report.dropped)
    assert len(notes) > 900

"Music statistics against MusPy itself, metre from the piece, any folder of generations, the job with a fine-tuned run"
import json, math, os
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

os.environ['HF_HUB_OFFLINE'] = '1'
import muspy
from smidilab.core import NoteTable, SmidiError
from smidilab.midiwrite import write_midi
from smidilab.musicstats import *
from smidilab.evaluate import *
from smidilab.likelihood import note_symbols, answer_bits, load_reference

from conftest import FIXTURES


def notes(pitch, onset, duration, **kw):
    n = len(pitch)
    return NoteTable(pitch=pitch, velocity=kw.pop('velocity', [80]*n), onset=onset, duration=duration, **kw)

C_MAJOR = notes([60, 62, 64, 65, 67, 69, 71, 72], np.arange(8)*96, [96]*8)


def muspy_music(piece: NoteTable, tmp_path) -> muspy.Music:
    "MusPy's reading of the piece written as MIDI at 192 ticks/s and 120 bpm: one MIDI tick is one grid tick"
    path = write_midi(piece, tmp_path / 'piece.mid', overwrite=True)
    music = muspy.read_midi(path)
    assert music.resolution == 96   # 96 ticks per quarter at 120 bpm = 192 ticks per second
    return music


SAME_AS_MUSPY = [(pitch_range, muspy.pitch_range), (n_pitches_used, muspy.n_pitches_used),
                 (n_pitch_classes_used, muspy.n_pitch_classes_used), (polyphony, muspy.polyphony),
                 (polyphony_rate, muspy.polyphony_rate), (scale_consistency, muspy.scale_consistency),
                 (pitch_entropy, muspy.pitch_entropy), (pitch_class_entropy, muspy.pitch_class_entropy)]


def assert_same_as_muspy(piece, music):
    for ours, theirs in SAME_AS_MUSPY:
        a, b = ours(piece), theirs(music)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12), ours.__name__
    for root, mode in [(0, 'major'), (9, 'minor'), (4, 'major'), (6, 'minor')]:
        assert pitch_in_scale_rate(piece, root, mode) == pytest.approx(muspy.pitch_in_scale_rate(music, root, mode))


@pytest.mark.parametrize('name', ['bach/bwv66.6', 'chopin/mazurka06-2.krn'])
def test_statistics_equal_muspy_on_corpus_pieces(name, tmp_path):
    from smidilab.corpus import corpus_notes
    piece = corpus_notes(name)
    assert_same_as_muspy(piece, muspy_music(piece, tmp_path))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(21, 108), st.integers(0, 400), st.integers(1, 200)), min_size=1, max_size=25))
def test_statistics_equal_muspy_on_random_pieces(tmp_path_factory, rows):
    "Overlapping notes, repeated pitches and chords, through MIDI, read by MusPy and by us (a piece starts at its first note)"
    from smidilab.midi import read_midi
    p, on, d = map(list, zip(*rows))
    on = [x - min(on) for x in on]   # MusPy counts leading silence as time steps; notes text has none
    tmp = tmp_path_factory.mktemp('random')
    music = muspy_music(notes(p, on, d), tmp)
    assert_same_as_muspy(read_midi(tmp / 'piece.mid'), music)   # what the file holds (same-pitch overlaps paired FIFO)


def test_beat_metrics_equal_muspy_where_the_definitions_agree(tmp_path):
    "No note ends on a beat line and the piece does not end on one, one onset step per tick: MusPy's numbers"
    piece = notes([60, 64, 62, 67, 65, 60], [0, 20, 200, 390, 600, 900], [50, 60, 90, 100, 150, 77])
    music = muspy_music(piece, tmp_path)
    assert silent_beat_rate(piece, beat_ticks(192)) == pytest.approx(muspy.empty_beat_rate(music))
    assert measure_onset_agreement(piece, 96.0, 4, steps_per_beat=96) == pytest.approx(muspy.groove_consistency(music, 384))


def test_beat_metrics_fix_muspys_off_by_one(tmp_path):
    "A note ending on a beat line: MusPy marks the next beat too, and adds a beat after a piece ending on a line"
    piece = notes([60, 62], [0, 288], [96, 96])   # beats 0 and 3 of 4 sound; 1 and 2 are silent
    music = muspy_music(piece, tmp_path)
    assert silent_beat_rate(piece, beat_ticks(192)) == 0.5
    assert muspy.empty_beat_rate(music) == pytest.approx(1 - 4 / 5)   # beats 0, 1, 3, 4 of 5 marked


def test_hand_made_pieces():
    s = piece_statistics(C_MAJOR)
    assert (s['pitch_in_scale_rate'], s['scale_consistency'], s['n_pitch_classes_used']) == (1.0, 1.0, 7)
    assert (s['polyphony'], s['polyphony_rate'], s['pitch_range'], s['n_pitches_used']) == (1.0, 0.0, 12, 8)
    assert (s['silent_beat_rate'], s['measure_onset_agreement']) == (0.0, 1.0)
    fsharp = notes(C_MAJOR.pitch + 6, C_MAJOR.onset, C_MAJOR.duration)
    assert pitch_in_scale_rate(fsharp) == pytest.approx(2/8) and scale_consistency(fsharp) == 1.0
    guitar = notes([64, 67, 69, 71], [0, 96, 192, 288], [96]*4, bend=[23, 31, 15, 23], instrument='guitar')
    assert bend_statistics(guitar) == {'bent_share': 0.5, 'bend_semitones': pytest.approx(0.25)}


def test_metre_comes_from_the_piece(tmp_path):
    "A Guitar Pro file's tempo and time signature set the beat; a MIDI file without a time signature says it used 4/4"
    import guitarpro, mido
    gp5 = FIXTURES / 'guitarpro' / 'gp2midi' / 'test_gp5.gp5'
    song = guitarpro.parse(str(gp5))
    m = file_metre(gp5)
    assert m['bpm'] == song.tempo and m['from'] == 'file'
    mid = mido.MidiFile(ticks_per_beat=96)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage('set_tempo', tempo=mido.bpm2tempo(90)),
                                      mido.MetaMessage('time_signature', numerator=6, denominator=8),
                                      mido.Message('note_on', note=60, velocity=80), mido.Message('note_off', note=60, time=96)]))
    mid.save(tmp_path / 'six_eight.mid')
    assert file_metre(tmp_path / 'six_eight.mid') == {'bpm': pytest.approx(90), 'beats_per_measure': 3.0, 'from': 'file'}
    slow = piece_statistics(notes([60, 62], [0, 4 * 96], [48, 48]), {'bpm': 60, 'beats_per_measure': 4})
    assert slow['silent_beat_rate'] == pytest.approx(1/3)   # 192-tick beats: notes in beats 0 and 2 of 3


def test_repetition_and_memorisation():
    from smidilab.corpus import read_chorales
    loop = [(60 + i % 3, 80, 10, 10, 23) for i in range(30)]
    assert repetition_rate(loop, 4) == pytest.approx(1 - 3/27)
    train = [note_symbols(c) for c in read_chorales(5)]
    alien = [(0, 1, 3, 5, 23)] * 3
    vocab = {}
    corpus = symbol_ids(train, vocab)
    for length in (1, 7, 40):
        sample = alien + train[1][20:20 + length] + alien + train[2][:3]
        assert longest_common_runs(symbol_ids([sample, alien], vocab), corpus) == [max(length, 3), 0]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    gen, data = write_demo_inputs(tmp_path_factory.mktemp('demo'))
    return gen, data


def test_a_folder_of_plain_midi_files(demo, tmp_path):
    "Another system's output: MIDI files with their own names, no sample_K.txt, no generation.json"
    from smidilab.corpus import corpus_notes
    _, data = demo
    folder = tmp_path / 'theirs'
    for name in ('bwv10.7', 'bwv1.6'):
        write_midi(corpus_notes(f'bach/{name}'), folder / f'{name}.mid')
    (folder / 'notes.json').write_text('{}')   # not a piece: ignored
    m = evaluate(EvalConfig(generated_dir=str(folder), reference=str(data), out_dir=str(tmp_path / 'out'),
                            ngram_samples=1, ngram_sample_notes=16))
    assert m['inputs']['generated_names'] == ['bwv1.6.mid', 'bwv10.7.mid'] and m['inputs']['errors'] == {}
    assert m['sets']['generated']['pieces'] == 2 and m['sets']['generated']['valid_share'] == 1.0
    assert m['matched']['generated']['piano']['generated_pieces'] == 2
    assert m['generation'] == {} and set(m['likelihood']) == {'context', 'repeat', 'ngram'}
    assert 'No generation.json' in (tmp_path / 'out' / 'report.md').read_text()


def test_a_folder_with_a_broken_file_reports_it(tmp_path, demo):
    folder = tmp_path / 'gen'
    write_midi(C_MAJOR, folder / 'good.mid')
    (folder / 'broken.mid').write_bytes(b'MThd\x00\x00')
    pieces = read_generation(folder, parse_options({}))
    assert pieces['names'] == ['good.mid'] and 'broken.mid' in pieces['errors']
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SmidiError, match='no generated pieces'): generation_files(tmp_path / 'empty')


def test_job_with_a_finetuned_run(tmp_path, demo):
    "The job notebook with a run folder: the base is the run's own base, the fine-tuned model its adapter; every answer"
    import torch
    from peft import LoraConfig, get_peft_model
    from smidilab.generate import load_generator
    from smidilab.run import run_job
    from smidilab.model import TrainConfig
    gen_dir, data = demo
    test = load_reference(data)[0]['test']
    tiny = load_generator('tiny')
    base, tok = tiny.model, tiny.tokenizer
    with torch.no_grad(): base.model.norm.weight.mul_(3.0)   # not the seed-0 tiny model: the run's own base must be used
    run, out = tmp_path / 'run', tmp_path / 'out'
    base.save_pretrained(run / 'base')
    expected_base = answer_bits(base, tok, test['prompt'], test['completion'], progress=False)[0]
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=['q_proj', 'v_proj']))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if 'lora_B' in name: p.normal_(std=0.5)   # a trained-looking adapter (B = 0 would change nothing)
    expected_tuned = answer_bits(lora, tok, test['prompt'], test['completion'], progress=False)[0]
    lora.save_pretrained(run / 'adapter'); base.config.save_pretrained(run / 'adapter'); tok.save_pretrained(run / 'tokenizer')
    TrainConfig(base_model='tiny', out_dir=str(run)).save(run / 'run_config.json')
    assert run_job('evaluate', {'generated_dir': str(gen_dir), 'reference': str(data), 'out_dir': str(out),
                                'model': str(run), 'ngram_samples': 1, 'ngram_sample_notes': 16}, tmp_path, log=False) == 0
    m = json.loads((out / 'metrics.json').read_text())
    lk = m['likelihood']
    assert set(lk) == {'context', 'repeat', 'ngram', 'base', 'finetuned'}
    assert m['likelihood_sample'] == {'test_answers': len(test), 'scored': len(test), 'seed': None}
    assert lk['base']['bits'] == pytest.approx(expected_base.sum(), rel=1e-4)
    assert lk['finetuned']['bits'] == pytest.approx(expected_tuned.sum(), rel=1e-4)
    assert abs(expected_tuned.sum() - expected_base.sum()) > 1
    assert all(v['answers'] == len(test) and v['pieces'] == 2 and v['notes'] == sum(test['n_notes']) for v in lk.values())
    assert m['likelihood_comparisons']['finetuned_minus_best_baseline']['baseline'] == 'context'
    report = (out / 'report.md').read_text()
    assert '| finetuned | the fine-tuned run |' in report and 'fine-tuned minus context' in report
    assert {'report.md', 'bits_per_note.png', 'histograms.png', 'eval_config.json'} <= {p.name for p in out.iterdir()}


def test_job_with_an_empty_test_split(tmp_path, demo):
    "A tiny corpus can leave the test split empty: the job still writes its report, with missing values as –"
    from datasets import DatasetDict, load_from_disk
    gen_dir, data = demo
    ds = load_from_disk(str(data))
    empty = DatasetDict({'train': ds['train'], 'validation': ds['validation'], 'test': ds['test'].select([])})
    empty.save_to_disk(str(tmp_path / 'empty'), num_shards={'train': 1, 'validation': 1, 'test': 1})
    (tmp_path / 'empty' / 'manifest.json').write_text((data / 'manifest.json').read_text())
    m = evaluate(EvalConfig(generated_dir=str(gen_dir), reference=str(tmp_path / 'empty'), out_dir=str(tmp_path / 'out'),
                            ngram_samples=1, ngram_sample_notes=8))
    assert m['likelihood']['context']['answers'] == 0 and m['sets']['reference']['pieces'] == 0
    assert '| context | strong baseline: per-field context model with a prompt cache | – |' in (tmp_path / 'out' / 'report.md').read_text()

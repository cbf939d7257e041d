"""Guitar Pro → text throughput: notes per second for a folder of GP3/GP4/GP5 files (default: the repository's fixtures).

    python benchmarks/guitarpro_speed.py                       # tests/fixtures/guitarpro, best of 5 runs per file
    python benchmarks/guitarpro_speed.py ~/dadagp --repeat 1   # any folder, searched recursively

Reading covers parsing, track choice, repeats, tempo map, ties and bends (`read_gp`, track 'auto') and writing the
text (`notes_to_text`, curve form); a `parse` column times the file reading alone (`scan_gp`). A last row times
`write_gp5` on what was read. One core, CPU time, best of `--repeat` runs (on a shared machine the best run is the
least disturbed). Prints a table; asserts nothing.
"""
import argparse, os, platform, sys, tempfile, time
from pathlib import Path
# this script's name shadows the `guitarpro` package (pyguitarpro) when run directly: drop its folder from the path
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != Path(__file__).resolve().parent]
from smidilab.core import find_inputs, GP_EXTS, InputFileError
from smidilab.codec import notes_to_text
from smidilab.gpfile import scan_gp
from smidilab.guitarpro import read_gp
from smidilab.tablature import write_gp5

DEFAULT = Path(__file__).resolve().parents[1] / 'tests' / 'fixtures' / 'guitarpro'


def best_time(fn, repeat: int) -> float:
    "Shortest wall time of `repeat` calls of `fn`"
    times = []
    for _ in range(repeat):
        t0 = time.process_time(); fn(); times.append(time.process_time() - t0)
    return min(times)


def parse(path: Path):
    "The file read into memory by our measures reader"
    return scan_gp(path)


def bench_file(path: Path, repeat: int) -> tuple[int, float, float]:
    "(notes, CPU seconds to read and write text, CPU seconds to parse) for one file"
    notes = read_gp(path)
    return len(notes), best_time(lambda: notes_to_text(read_gp(path), curves=True), repeat), best_time(lambda: parse(path), repeat)


def bench_write(tables: list, repeat: int) -> tuple[int, float]:
    "(notes, seconds) to write every table as GP5"
    with tempfile.TemporaryDirectory() as d:
        def run():
            for i, t in enumerate(tables): write_gp5(t, Path(d) / f'{i}.gp5', overwrite=True)
        return sum(map(len, tables)), best_time(run, repeat)


def main(folder: Path, repeat: int):
    files = find_inputs([folder], GP_EXTS)
    print(f'# Guitar Pro → text, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU time, best of {repeat}')
    print(f"{'file':40s} {'notes':>7s} {'parse ms':>9s} {'total ms':>9s} {'notes/s':>10s}")
    total_n, total_s, total_p, tables, failed = 0, 0.0, 0.0, [], []
    for p in files:
        try: n, s, ps = bench_file(p, repeat)
        except InputFileError as e: failed.append(f'{p.name}: {e.reason}'); continue
        total_n, total_s, total_p = total_n + n, total_s + s, total_p + ps
        if n: tables.append(read_gp(p))
        print(f'{p.name[:40]:40s} {n:7d} {ps * 1e3:9.2f} {s * 1e3:9.2f} {n / s if s else 0:10.0f}')
    print(f"{'TOTAL read → text':40s} {total_n:7d} {total_p * 1e3:9.2f} {total_s * 1e3:9.2f} {total_n / total_s:10.0f}")
    wn, ws = bench_write(tables, repeat)
    print(f"{'TOTAL write_gp5 (notes → tablature)':40s} {wn:7d} {'':9s} {ws * 1e3:9.2f} {wn / ws:10.0f}")
    for f in failed: print('failed (reported, skipped):', f)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folder', nargs='?', type=Path, default=DEFAULT)
    ap.add_argument('--repeat', type=int, default=5)
    a = ap.parse_args()
    main(a.folder, a.repeat)

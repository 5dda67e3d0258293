"""The item catalogue: which items exist, which may be recommended, and what they are.

`RECSYS_ITEMS_URI` (or the `items_uri` param) names it, in one of three shapes:

- a table (SQL `?table=`, CSV or Parquet; a file, glob, folder or S3 prefix) with `item_id`,
  an optional `available` (true/false, 1/0, yes/no; empty means true), optional text columns
  (`title`, `name`, `description`), and any other columns as categorical attributes, where a
  cell may hold several values separated by `|` (`tags = "vegan|gluten-free"`);
- `item_id, attribute` rows (one attribute per row);
- S3-Rec's attribute JSON (`{"item": [attribute, ...]}`): every item available, no text.

Attributes become `column=value` strings (`brand=acme`), the form the attribute objective and
the business rules use. An item the log knows but the catalogue does not is available: the
catalogue restricts only what it names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recsys_tasks.data.columns import ALIASES, normalise
from recsys_tasks.data.formats import parse, parse_item_attributes
from recsys_tasks.data.sources import iter_files, parse_sql_source
from recsys_tasks.db.sources import read_table
from recsys_tasks.errors import DataValidationError, SourceError
from recsys_tasks.redact import redact

TEXT_COLUMNS = ("title", "name", "description")
SEPARATOR = "|"
_TRUE = {"true", "1", "yes", "y", "t", ""}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Catalogue:
    items: pd.DataFrame  # item_id (str, unique), available (bool), text, title (str; "" when none)
    attributes: pd.DataFrame  # item_id, attribute ("column=value", or as given in long form)

    @property
    def unavailable(self) -> set[str]:
        return set(self.items.loc[~self.items["available"], "item_id"])


def read_catalogue(uri: str) -> Catalogue:
    """The catalogue at `uri`, any shape above; a malformed one raises SourceError naming it."""
    if (sql := parse_sql_source(uri)) is not None:
        try:
            frame = read_table(sql.url, sql.table)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"catalogue {redact(uri)}: {type(exc).__name__}: {redact(str(exc.orig or exc))[:300]}") from None
        return catalogue_from_frame(frame, redact(uri))
    parts = []
    for name, data in iter_files(uri):
        if name.lower().endswith(".json"):
            attributes = parse_item_attributes(data, name)
            items = pd.DataFrame({"item_id": attributes["item_id"].unique()})
            parts.append(Catalogue(items.assign(available=True, text="", title=""), attributes))
        else:
            parts.append(catalogue_from_frame(parse(data, name), name))
    if not parts:
        raise SourceError(f"catalogue {redact(uri)}: no files")
    return Catalogue(pd.concat([p.items for p in parts], ignore_index=True),
                     pd.concat([p.attributes for p in parts], ignore_index=True).drop_duplicates())


def catalogue_from_frame(frame: pd.DataFrame, origin: str) -> Catalogue:
    """A wide table (item_id, available, text, categorical columns) or `item_id, attribute` rows."""
    by_name = {normalise(c): c for c in frame.columns}
    id_column = next((by_name[n] for n in ("itemid", *map(normalise, ALIASES["item_id"])) if n in by_name), None)
    if id_column is None:
        raise SourceError(f"catalogue {origin}: no item_id column (found {', '.join(map(str, frame.columns))})")
    ids = frame[id_column].astype(str).str.strip()
    if set(frame.columns) == {id_column, by_name.get("attribute")}:  # long form: one attribute per row
        attributes = pd.DataFrame({"item_id": ids, "attribute": frame[by_name["attribute"]].astype(str)})
        items = pd.DataFrame({"item_id": ids.unique()}).assign(available=True, text="", title="")
        return Catalogue(items, attributes)
    available = pd.Series(True, index=frame.index)
    if "available" in by_name:
        raw = frame[by_name["available"]]
        text = raw.map(lambda v: "" if pd.isna(v) else str(v).strip().lower())
        bad = ~text.isin(_TRUE | _FALSE)
        if bad.any():
            examples = ", ".join(f"{i}: {v!r}" for i, v in zip(ids[bad][:3], raw[bad][:3], strict=False))
            raise SourceError(
                f"catalogue {origin}: 'available' must be true or false; {int(bad.sum())} rows are not ({examples})"
            )
        available = ~text.isin(_FALSE)
    text_columns = [by_name[n] for n in TEXT_COLUMNS if n in by_name]
    texts = (frame[text_columns].fillna("").astype(str).agg(" ".join, axis=1).str.strip()
             if text_columns else pd.Series("", index=frame.index))
    used = {id_column, by_name.get("available"), *text_columns}
    rows = []
    for column in (c for c in frame.columns if c not in used):
        values = frame[column].map(lambda v: [] if pd.isna(v) else [p.strip() for p in str(v).split(SEPARATOR) if p.strip()])
        rows += [(item, f"{column}={value}") for item, cell in zip(ids, values, strict=True) for value in cell]
    # the item's name as readers see it (recommendations_detailed): `title`, else `name`
    name_column = next((by_name[n] for n in ("title", "name") if n in by_name), None)
    titles = frame[name_column].fillna("").astype(str).str.strip() if name_column else pd.Series("", index=frame.index)
    items = pd.DataFrame({"item_id": ids, "available": available.astype(bool), "text": texts, "title": titles})
    return Catalogue(items, pd.DataFrame(rows, columns=["item_id", "attribute"]))


def check_catalogue(catalogue: Catalogue, event_items: pd.Series, max_missing: float) -> list[str]:
    """Errors (raised) and warnings (returned): unique ids, and how many of the log's items the
    catalogue lacks, an error above `max_missing` of them."""
    items = catalogue.items
    duplicated = items["item_id"][items["item_id"].duplicated()]
    if len(duplicated):
        raise DataValidationError(
            f"catalogue: item ids must be unique; {duplicated.nunique()} repeat (e.g. {', '.join(duplicated.unique()[:5])})"
        )
    known = set(items["item_id"])
    logged = pd.Series(event_items.astype(str).unique())
    missing = logged[~logged.isin(known)]
    share = len(missing) / max(len(logged), 1)
    summary = (f"catalogue: {len(items)} items ({int((~items['available']).sum())} unavailable, "
               f"{int((items['text'] != '').sum())} with text, {catalogue.attributes['item_id'].nunique()} with attributes); "
               f"{len(missing)} of the log's {len(logged)} items ({share:.1%}) are not in it")
    if share > max_missing:
        raise DataValidationError(
            f"{summary}, more than catalogue_max_missing = {max_missing:.1%} (e.g. {', '.join(missing[:5])}): "
            "is it the catalogue of this log?"
        )
    return [summary]


def blocked_tokens(item_ids: list[str], unavailable: set[str], excluded: set[str] = frozenset()) -> np.ndarray | None:
    """(n_items + 1,) True where an item may not be recommended (token 0, padding, included);
    None when nothing is blocked."""
    never = unavailable | excluded
    if not never:
        return None
    return np.concatenate([[True], np.fromiter((i in never for i in item_ids), dtype=bool, count=len(item_ids))])


def excluded_items(config_value: str) -> set[str]:
    """`exclude_items` ("a,b, c") as a set of ids."""
    return {part.strip() for part in config_value.split(",") if part.strip()}


def items_with_attributes(attributes: pd.DataFrame, wanted: set[str]) -> set[str]:
    """Ids of items holding any of the `column=value` attributes in `wanted`."""
    return set(attributes.loc[attributes["attribute"].isin(wanted), "item_id"]) if wanted and len(attributes) else set()


def attribute_groups(item_ids: list[str], attributes: pd.DataFrame, column: str) -> np.ndarray:
    """(n_items + 1,) group id per token of the item's value of `column` (its first, when it
    has several); -1 for padding and for items without one (never capped)."""
    prefix = f"{column}="
    rows = attributes[attributes["attribute"].str.startswith(prefix)].drop_duplicates("item_id")
    codes = pd.Series(pd.factorize(rows["attribute"])[0], index=rows["item_id"].to_numpy())
    return np.concatenate([[-1], codes.reindex(item_ids).fillna(-1).to_numpy(dtype=np.int64)])

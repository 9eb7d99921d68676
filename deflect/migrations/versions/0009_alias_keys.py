"""aliases.query_key ignores punctuation too (wording.alias_key): "How do I export my data?" and
"how do I export my data" are one alias of an item, the second a confirmation of the first.

No schema change, data only: every stored key is recomputed from its query, and aliases of
one item that now share a key are merged into one (the active one, else the oldest) rather
than left as duplicates the new key could never reach. The merged row takes the others'
confirmations (alias_confirmations rows, so hourly limits and "already confirmed" still hold)
and the higher count; it is active if any was. Nothing is activated that was not: a pending
alias whose merged count now reaches min_confirmations is learned on its next confirmation.

Revision ID: 0009
Revises: 0008
"""

import re
import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

aliases = sa.table(
    "aliases", sa.column("id", sa.Integer), sa.column("item_type", sa.String), sa.column("item_id", sa.String),
    sa.column("query", sa.Text), sa.column("query_key", sa.String), sa.column("confirmations", sa.Integer),
    sa.column("active", sa.Boolean),
)
confirmations = sa.table(
    "alias_confirmations", sa.column("id", sa.Integer), sa.column("alias_id", sa.Integer),
    sa.column("session", sa.String), sa.column("client", sa.String),
)
sync_state = sa.table("sync_state", sa.column("name", sa.String), sa.column("value", sa.Integer))

# Frozen copies of events.normalize_query and wording.alias_key as of this revision (a migration
# must keep doing what it did; tests/test_alias_keys.py checks they agree with the code).
_MEANINGFUL = frozenset("#%&@*")


def normalize_query(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def alias_key(text: str) -> str:
    plain = unicodedata.normalize("NFKC", normalize_query(text)).casefold()
    spaced = "".join(" " if unicodedata.category(c)[0] == "P" and c not in _MEANINGFUL else c for c in plain)
    return (" ".join(spaced.split()) or plain)[:1000]


def upgrade() -> None:
    _rekey(alias_key)


def downgrade() -> None:
    # The merged rows stay merged; the keys go back to what 0008's code computes.
    _rekey(lambda text: normalize_query(text)[:1000])


def _rekey(key) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(aliases).order_by(aliases.c.id)).all()
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[(row.item_type, row.item_id, key(row.query))].append(row)
    merged = 0
    changed = []  # (id, key) of the rows kept whose key is another now
    for (_, _, new_key), group in groups.items():
        keeper = min(group, key=_keeper_order)
        if len(group) > 1:
            _merge(conn, keeper, group)
            merged += 1
        if keeper.query_key != new_key:
            changed.append((keeper.id, new_key))
    if changed:
        # In two steps, so that no row takes a key another one still holds for a moment (unique per item).
        update = aliases.update().where(aliases.c.id == sa.bindparam("row_id")).values(query_key=sa.bindparam("key"))
        conn.execute(update, [{"row_id": i, "key": f"\u2063{i}"} for i, _ in changed])
        conn.execute(update, [{"row_id": i, "key": k} for i, k in changed])
    if merged:  # running servers reload their aliases
        bumped = conn.execute(
            sync_state.update().where(sync_state.c.name == "aliases").values(value=sync_state.c.value + 1)).rowcount
        if not bumped:
            conn.execute(sync_state.insert().values(name="aliases", value=1))


def _keeper_order(row) -> tuple:
    """The alias a group keeps: an active one (it is in retrieval, with its vector), else the oldest."""
    return (not row.active, row.id)


def _merge(conn, keeper, group: list) -> None:
    """Fold the group's other aliases into `keeper`: their confirmations move to it, they go."""
    other_ids = [row.id for row in group if row.id != keeper.id]
    conn.execute(confirmations.update().where(confirmations.c.alias_id.in_(other_ids)).values(alias_id=keeper.id))
    people = conn.execute(
        sa.select(confirmations.c.session, confirmations.c.client).where(confirmations.c.alias_id == keeper.id)
        .order_by(confirmations.c.id)
    ).all()
    sessions: set = set()
    clients: set = set()
    distinct = 0
    for session, client in people:  # distinct people as aliases.confirm counts them: by session, and by address
        if session in sessions or (client is not None and client in clients):
            continue
        distinct += 1
        sessions.add(session)
        if client is not None:
            clients.add(client)
    count = max([distinct] + [row.confirmations for row in group])
    conn.execute(aliases.delete().where(aliases.c.id.in_(other_ids)))
    # keeper is active if any of the group is (_keeper_order): only the count changes.
    conn.execute(aliases.update().where(aliases.c.id == keeper.id).values(confirmations=count))

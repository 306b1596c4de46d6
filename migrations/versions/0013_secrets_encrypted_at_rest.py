"""secrets at rest, rotation overlap and disabled receivers (DESIGN §16)

Revision ID: 0013
Revises: 0012

`webhook_subscription.secret` (plain `whsec_…`) becomes `secret_ciphertext`: each existing
secret is encrypted AES-GCM under SECRETS_KEY (app/core/secretbox.py, bound to the row's id),
and so is the `secret` of the stored idempotent responses of createWebhook and createSystem.
New: the previous secret and the end of its overlap (rotate-secret), and `disabled_at` (the
receiver answered 410 Gone).

The key: `config.attributes["secrets_keyring"]` when a caller hands one over (tests), else
the settings (SECRETS_KEY; in dev the key generated beside the database, as the server does).
It is loaded only when there is a secret to convert. The downgrade decrypts them again.

No table is rebuilt (SQLite's batch mode would drop webhook_subscription, and with it, through
ON DELETE CASCADE, every delivery): columns are added and dropped in place. On SQLite a NOT
NULL column added to a table with rows needs a default, so there `secret_ciphertext` has an
empty-string server default that the application never relies on.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Operations whose stored response shows a signing secret once.
SEALED_OPERATIONS = ('createWebhook', 'createSystem')

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _subscriptions(secret_column: str) -> Any:
    return sa.table(
        'webhook_subscription',
        sa.column('id', sa.Uuid()),
        sa.column(secret_column, sa.String()),
    )


_records = sa.table(
    'idempotency_record',
    sa.column('tenant', sa.String()),
    sa.column('operation', sa.String()),
    sa.column('key', sa.String()),
    sa.column('response_body', _JSON),
)


def _keyring() -> Any:
    given = context.config.attributes.get('secrets_keyring')
    if given is not None:
        return given
    from app.core.config import anchored_database_url, get_settings
    from app.core.secretbox import load_keyring

    url = op.get_bind().engine.url.render_as_string(hide_password=False)
    settings = get_settings().model_copy(update={'database_url': anchored_database_url(url)})
    return load_keyring(settings)


def _sub_context(sub_id: Any) -> str:
    # app.webhooks.signing.secret_context
    return f'webhook_subscription:{sub_id}'


def _record_context(tenant: str, operation: str, key: str) -> str:
    # app.core.idempotency.record_context
    return f'idempotency_record:{tenant}\x00{operation}\x00{key}'


def _convert_records(change: Any) -> None:
    """Each stored response of SEALED_OPERATIONS whose `secret` `change` rewrites."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_records).where(_records.c.operation.in_(SEALED_OPERATIONS))
    ).all()
    for tenant, operation, key, body in rows:
        if not isinstance(body, dict) or not isinstance(body.get('secret'), str):
            continue
        new = change(body['secret'], _record_context(tenant, operation, key))
        if new == body['secret']:
            continue
        bind.execute(
            _records.update()
            .where(
                _records.c.tenant == tenant,
                _records.c.operation == operation,
                _records.c.key == key,
            )
            .values(response_body={**body, 'secret': new})
        )


def upgrade() -> None:
    is_sqlite = op.get_bind().dialect.name == 'sqlite'
    op.add_column(
        'webhook_subscription',
        sa.Column(
            'secret_ciphertext',
            sa.String(length=300),
            nullable=not is_sqlite,
            server_default='' if is_sqlite else None,
        ),
    )
    op.add_column('webhook_subscription', sa.Column('previous_secret_ciphertext', sa.String(length=300), nullable=True))
    op.add_column('webhook_subscription', sa.Column('previous_secret_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('webhook_subscription', sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))

    bind = op.get_bind()
    old, new = _subscriptions('secret'), _subscriptions('secret_ciphertext')
    plain = bind.execute(sa.select(old.c.id, old.c.secret)).all()
    keyring: Any = None
    if plain:
        keyring = _keyring()
        for sub_id, secret in plain:
            bind.execute(
                new.update()
                .where(new.c.id == sub_id)
                .values(secret_ciphertext=keyring.seal(secret, _sub_context(sub_id)))
            )
    has_records = bind.execute(
        sa.select(sa.func.count()).select_from(_records).where(
            _records.c.operation.in_(SEALED_OPERATIONS)
        )
    ).scalar_one()
    if has_records:
        keyring = keyring or _keyring()
        from app.core.secretbox import is_sealed

        _convert_records(
            lambda v, ctx: v if is_sealed(v) else keyring.seal(v, ctx)
        )
    if not is_sqlite:
        op.alter_column('webhook_subscription', 'secret_ciphertext', nullable=False)
    op.drop_column('webhook_subscription', 'secret')


def downgrade() -> None:
    is_sqlite = op.get_bind().dialect.name == 'sqlite'
    op.add_column(
        'webhook_subscription',
        sa.Column(
            'secret',
            sa.String(length=100),
            nullable=not is_sqlite,
            server_default='' if is_sqlite else None,
        ),
    )
    bind = op.get_bind()
    old, new = _subscriptions('secret'), _subscriptions('secret_ciphertext')
    sealed = bind.execute(sa.select(new.c.id, new.c.secret_ciphertext)).all()
    keyring: Any = None
    if sealed:
        keyring = _keyring()
        for sub_id, value in sealed:
            bind.execute(
                old.update()
                .where(old.c.id == sub_id)
                .values(secret=keyring.open(value, _sub_context(sub_id)))
            )
    has_records = bind.execute(
        sa.select(sa.func.count()).select_from(_records).where(
            _records.c.operation.in_(SEALED_OPERATIONS)
        )
    ).scalar_one()
    if has_records:
        keyring = keyring or _keyring()
        from app.core.secretbox import is_sealed

        _convert_records(lambda v, ctx: keyring.open(v, ctx) if is_sealed(v) else v)
    if not is_sqlite:
        op.alter_column('webhook_subscription', 'secret', nullable=False)
    op.drop_column('webhook_subscription', 'disabled_at')
    op.drop_column('webhook_subscription', 'previous_secret_until')
    op.drop_column('webhook_subscription', 'previous_secret_ciphertext')
    op.drop_column('webhook_subscription', 'secret_ciphertext')

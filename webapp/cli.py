"""``flask`` commands for operators (``flask --app wsgi <command>``)."""
from __future__ import annotations

import click
from flask import Flask


def register(app: Flask) -> None:
    """Add Onboard's commands to ``app.cli``."""

    @app.cli.command("relay-outbox")
    @click.option("--older-than", default=0.0, show_default=True,
                  help="Only rows unpublished for this many seconds.")
    def relay_outbox_cmd(older_than: float) -> None:
        """Publish outbox mails the web could not publish (broker was down)."""
        from webapp.outbox import relay_unpublished

        click.echo(f"published {relay_unpublished(older_than)}")

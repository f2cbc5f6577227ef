"""The dashboard's page templates (``templates/``) and static files (``static/``), served by
:mod:`retention.serving.api`."""

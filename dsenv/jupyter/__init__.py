"""Notebook front-ends: IPython magics (and, later, the widgets panel and the Lab side panel)."""

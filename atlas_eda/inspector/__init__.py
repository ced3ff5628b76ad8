"""The read-only inspector of a store's timeline: :mod:`.views` (what is shown, as JSON-ready
dicts), :mod:`.app` (the web app of ``atlas-eda inspect``, extra ``inspect``) and
:mod:`.widget` (the notebook widget of ``Timeline.widget()``, extra ``notebook``).

Importing this package imports neither extra: each module imports its own library.
"""

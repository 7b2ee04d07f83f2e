"""The composition root and everything at the edge: settings, wiring (``services.py``:
``build_services``; ``app.py``: ``create_app``), HTTP controllers and what they get injected
(``dependencies.py``), the OpenAI-compatible proxy (``proxy/``), NATS authorization, the reactions
with outside effects (``reactions.py``), and the ``ownllm`` CLI. Domain errors become HTTP problems
in one place (``problems.py``).
"""

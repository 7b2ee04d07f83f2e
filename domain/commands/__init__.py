"""The application's commands, one module per context, composed by :class:`domain.application.OwnLLM`.

``base`` holds what every command shares (loading within a tenant, saving atomically, the clock);
``tenancy`` (signup, invites, roles, suspensions), ``access`` (API keys, pairing, agents) and
``metering`` (usage) add the commands of their context. Aggregates stay in their own modules
(``domain/user.py`` ...): their event topics are stored, so they never move.
"""

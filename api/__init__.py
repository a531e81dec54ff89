"""The service API: REST and WebSocket over tradeloop's stores, for a team (``api.app.create_app``).

It reads and writes through ``tradeloop`` (the operational database, the registry, the
lake) and the bus; it never imports the engine (``live/``): a session is started, paused or
stopped by writing its row, as ``tradeloop live`` does.
"""

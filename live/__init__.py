"""The live engine: feeds, the engine loop, brokers, the event bus and session control.

It imports tradeloop (the same features, strategies and threshold decision as research)
and never dagster.
"""
